"""The `liveclass` command: everything the Makefile and operators run."""

from __future__ import annotations

import argparse
import copy
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from liveclass.config import WebConfig
    from liveclass.mediabackends.cloudflare import CloudflareBackend


def _django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "liveclass.settings")
    import django

    django.setup()


def _manage(*args: str) -> None:
    from django.core.management import call_command

    call_command(*args)


def _start_media(config: WebConfig, web_url: str) -> subprocess.Popen[bytes] | None:
    """Start the embedded media server next to web (make run's one-command setup)."""
    if config.MEDIA_BACKEND != "embedded":
        return None
    env = dict(os.environ)
    # Events go back to this web process unless an operator pointed them elsewhere.
    env.setdefault("MEDIA_WEBHOOK_URL", f"{web_url}/api/media/events")
    env.setdefault("MEDIA_WEBHOOK_SECRET", config.MEDIA_WEBHOOK_SECRET)
    env.setdefault("MEDIA_SIGNING_KEY", config.MEDIA_SIGNING_KEY)
    env.setdefault("MEDIA_RECORDINGS_DIR", str(config.DATA_DIR / "recordings"))
    env.setdefault("MEDIA_PUBLIC_URL", config.media_public_url)
    return subprocess.Popen([sys.executable, "-m", "liveclass.media", "--log-level", "warning"], env=env)


HOUSEKEEPING_INTERVAL_SECONDS = 3600

# The chat's frames are at most 4 KB (chat.consumers); uvicorn closes the socket (1009) on a
# bigger one instead of buffering it whole, as it would up to its 16 MiB default.
WS_MAX_BYTES = 16 * 1024


class WithoutQuery(logging.Filter):
    """uvicorn logs a request's path with its query string (access lines, websocket
    handshakes); a query may carry a token, so web's log gets the path alone."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(arg.split("?", 1)[0] if isinstance(arg, str) and arg.startswith("/") else arg
                                for arg in record.args)
        return True


def web_log_config() -> dict[str, Any]:
    """uvicorn's logging with `WithoutQuery` on every handler; a dict (not a filter added here)
    because each worker process configures its logging from it."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"without_query": {"()": f"{__name__}.WithoutQuery"}}
    for handler in config["handlers"].values():
        handler["filters"] = ["without_query"]
    return config


def _housekeeping_loop(stop: threading.Event) -> None:
    """make run's periodic `liveclass housekeeping` (it only deletes files; no state depends on it)."""
    import logging

    from django.db import connection

    from liveclass.replays import housekeeping

    while not stop.wait(HOUSEKEEPING_INTERVAL_SECONDS):
        try:
            housekeeping.run()
        except Exception:  # keep the loop alive; the next run retries
            logging.getLogger(__name__).exception("housekeeping failed")
        finally:
            connection.close()


def cmd_media(ns: argparse.Namespace) -> int:
    from liveclass.media.server import main as media_main

    return media_main(ns.args)


def cmd_run(ns: argparse.Namespace) -> int:
    """Migrate, load demo data into an empty database, serve web and the media server."""
    from liveclass.config import web_config

    config = web_config()
    if ns.workers > 1 and not config.REDIS_URL:
        # Sessions are read through the cache: with a cache per process, a sign-out in
        # one worker would not reach the others (nor would rate limits or chat).
        print("liveclass run: more than one worker needs REDIS_URL (the cache and chat layer the "
              "workers share)", file=sys.stderr)
        return 2
    _django()
    _manage("migrate", "--no-input", "-v", "0")
    _manage("collectstatic", "--no-input", "-v", "0")
    if not ns.no_demo:
        from liveclass.demo import DEMO_INSTRUCTOR, DEMO_USER, load_demo

        load_demo()
        demo_lines = [
            f"  demo instructor: {DEMO_INSTRUCTOR[0]} / {DEMO_INSTRUCTOR[1]}",
            f"  demo user:       {DEMO_USER[0]} / {DEMO_USER[1]}",
        ]
    else:
        demo_lines = []
    host, port = ns.host or config.HOST, ns.port or config.PORT
    media = None if ns.no_media else _start_media(config, f"http://{host}:{port}")
    stop_housekeeping = threading.Event()
    threading.Thread(target=_housekeeping_loop, args=(stop_housekeeping,), daemon=True).start()
    banner = [
        "",
        f"Liveclass is running at http://{host}:{port}/streams",
        *([f"  media server:    {config.media_public_url} (WHIP/WHEP)"] if media else []),
        *demo_lines,
        "  instructor code: " + (config.INSTRUCTOR_ACCESS_TOKEN if config.DEBUG else "set by INSTRUCTOR_ACCESS_TOKEN"),
        f"  admin:           http://{host}:{port}/admin/ (create staff with: liveclass manage createsuperuser)",
        "",
    ]
    print("\n".join(banner), flush=True)
    import uvicorn

    try:
        uvicorn.run("liveclass.asgi:application", host=host, port=port,
                    log_level="info" if config.DEBUG else "warning", log_config=web_log_config(),
                    proxy_headers=False, lifespan="off", workers=ns.workers, ws_max_size=WS_MAX_BYTES)
    finally:
        stop_housekeeping.set()
        if media is not None:
            media.terminate()
            try:
                media.wait(timeout=10)
            except subprocess.TimeoutExpired:
                media.kill()
    return 0


def cmd_demo(ns: argparse.Namespace) -> int:
    _django()
    from liveclass.demo import load_demo

    result = load_demo()
    print("demo data loaded" if result.created else "database not empty: demo data left alone")
    return 0


def cmd_token(ns: argparse.Namespace) -> int:
    from liveclass.config import media_config
    from liveclass.media.tokens import sign_token

    print(sign_token(media_config().signing_key, sub=ns.input, role=ns.role, ttl=ns.ttl, uid=ns.uid))
    return 0


def cmd_wallet(ns: argparse.Namespace) -> int:
    _django()
    import secrets

    from liveclass.accounts.models import User
    from liveclass.errors import DomainError
    from liveclass.wallet import services as wallet

    try:
        user = User.objects.get(email__iexact=ns.email)
    except User.DoesNotExist:
        print(f"no user with email {ns.email}", file=sys.stderr)
        return 2
    if ns.action == "grant":
        try:
            wallet.grant(user, ns.amount, key=ns.key or f"cli:{secrets.token_hex(8)}", note=ns.note or "Granted by CLI")
        except DomainError as exc:
            print(exc.detail, file=sys.stderr)
            return 2
    print(f"{user.email}: {wallet.balance(user)} tokens")
    return 0


def cmd_housekeeping(ns: argparse.Namespace) -> int:
    _django()
    from liveclass.replays import housekeeping

    report = housekeeping.run()
    print(f"recordings finalized: {len(report.finalized)}; deleted: {len(report.deleted)}; "
          f"orphans deleted: {len(report.orphans_deleted)}; "
          f"failed (retried next run): {len(report.failed) + len(report.orphans_failed)}")
    return 1 if report.failed or report.orphans_failed else 0


def cmd_check(ns: argparse.Namespace) -> int:
    from liveclass.preflight import problems

    found = problems()
    for problem in found:
        print(problem)
    if found:
        print(f"liveclass check: {len(found)} problem(s); see docs/deploy.md", file=sys.stderr)
        return 1
    print("ok")
    return 0


SIGNING_KEY_VARIABLES = ("CLOUDFLARE_SIGNING_KEY_ID", "CLOUDFLARE_SIGNING_KEY_PEM")


def read_env_file(path: str) -> dict[str, str]:
    """NAME=value lines of an environment file (comments and blanks skipped); {} if absent."""
    values: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        return values
    for line in lines:
        name, sep, value = line.strip().removeprefix("export ").partition("=")
        if sep and name and not name.startswith("#"):
            values[name.strip()] = value.strip()
    return values


def write_env_file(path: str, values: dict[str, str]) -> None:
    """Set `values` in the environment file at `path`: each NAME= line replaced in place (or
    appended), other lines kept, written whole to a temporary file and renamed, mode 0600
    (the file holds secrets)."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        lines = []
    pending = dict(values)
    out: list[str] = []
    for line in lines:
        name = line.strip().removeprefix("export ").partition("=")[0].strip()
        if name in values:
            if name in pending:
                out.append(f"{name}={pending.pop(name)}")
            continue  # a repeated line would override the new value: drop it
        out.append(line)
    out.extend(f"{name}={value}" for name, value in pending.items())
    directory = os.path.dirname(os.path.abspath(path))
    temp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("\n".join(out) + "\n")
        os.chmod(temp, 0o600)
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


def cmd_cloudflare(ns: argparse.Namespace) -> int:
    """`liveclass cloudflare setup`: the Stream signing key viewers' WHEP URLs are signed with,
    and the video webhook with the secret Cloudflare generates for it.

    Signing key, once: creates a key (``POST /stream/keys``) unless one is configured and
    exists. Rotation is two steps so no viewer holds a URL signed by a deleted key:
    `--rotate-key` creates and stores a new key; after web runs with it and PLAY_TOKEN_TTL has
    passed, `--delete-key OLD` revokes the old one (``DELETE /stream/keys/{id}``).

    Video webhook: ``PUT /stream/webhook {"notificationUrl"}`` to `--webhook-url` (default: the
    first CSRF_TRUSTED_ORIGINS origin + /api/media/events) unless it is registered there with
    the configured CLOUDFLARE_WEBHOOK_SECRET; Cloudflare returns the secret (``GET`` returns it
    too, so a lost one is recovered without re-registering). Secrets are printed, or written
    with `--env-file`, never stored elsewhere.
    """
    from liveclass.config import web_config
    from liveclass.errors import MediaBackendError
    from liveclass.mediabackends.cloudflare import CloudflareBackend

    config = web_config()
    missing = [name for name in ("CLOUDFLARE_ACCOUNT_ID", "CLOUDFLARE_API_TOKEN") if not getattr(config, name)]
    if missing:
        print(f"liveclass cloudflare: set {' and '.join(missing)} first", file=sys.stderr)
        return 2
    stored = read_env_file(ns.env_file) if ns.env_file else {}
    current = stored.get("CLOUDFLARE_SIGNING_KEY_ID") or config.CLOUDFLARE_SIGNING_KEY_ID
    webhook_url = ns.webhook_url or _site_events_url(config.CSRF_TRUSTED_ORIGINS)
    values: dict[str, str] = {}
    with CloudflareBackend(api_base=config.CLOUDFLARE_API_BASE, account_id=config.CLOUDFLARE_ACCOUNT_ID,
                           api_token=config.CLOUDFLARE_API_TOKEN,
                           customer_code=config.CLOUDFLARE_STREAM_CUSTOMER_CODE) as backend:
        try:
            if ns.delete_key:
                if ns.delete_key == current:
                    print(f"liveclass cloudflare: {ns.delete_key} is the configured signing key; rotate first "
                          "(--rotate-key), restart web, then delete the old one", file=sys.stderr)
                    return 2
                backend.delete_signing_key(ns.delete_key)
                print(f"signing key {ns.delete_key} deleted: URLs signed with it no longer play")
                return 0
            if current and not ns.rotate_key:
                if current not in backend.list_signing_key_ids():
                    print(f"liveclass cloudflare: the configured signing key {current} does not exist on Cloudflare; "
                          "run with --rotate-key", file=sys.stderr)
                    return 1
                print(f"signing key {current} is configured and exists on Cloudflare; nothing to do "
                      "(--rotate-key makes a new one)")
            else:
                key = backend.create_signing_key()
                values.update({"CLOUDFLARE_SIGNING_KEY_ID": key.id, "CLOUDFLARE_SIGNING_KEY_PEM": key.pem})
            if webhook_url:
                configured = stored.get("CLOUDFLARE_WEBHOOK_SECRET") or config.CLOUDFLARE_WEBHOOK_SECRET
                secret = _video_webhook(backend, webhook_url, configured)
                if secret != configured:
                    values["CLOUDFLARE_WEBHOOK_SECRET"] = secret
            else:
                print("liveclass cloudflare: video webhook not registered: pass --webhook-url "
                      "https://SITE/api/media/events (or set CSRF_TRUSTED_ORIGINS)", file=sys.stderr)
        except MediaBackendError as exc:
            # What was made before the failure (a key Cloudflare shows once) is still stored below.
            print(f"liveclass cloudflare: {exc}", file=sys.stderr)
            failed = True
        else:
            failed = False
    if values and ns.env_file:
        write_env_file(ns.env_file, values)
        print(f"{', '.join(values)} written to {ns.env_file} (mode 0600)")
    elif values:
        print("\n".join(f"{name}={value}" for name, value in values.items()))
    new_key = values.get("CLOUDFLARE_SIGNING_KEY_ID")
    if new_key and current and current != new_key:
        print(f"next: restart web with the new key, wait PLAY_TOKEN_TTL ({config.PLAY_TOKEN_TTL} s), then run "
              f"`liveclass cloudflare setup --delete-key {current}`", file=sys.stderr)
    return 1 if failed else 0


def _site_events_url(csrf_trusted_origins: str) -> str:
    """The web's event endpoint on its first trusted origin, or "" when none is set."""
    origins = [o.strip().rstrip("/") for o in csrf_trusted_origins.split(",") if o.strip()]
    return f"{origins[0]}/api/media/events" if origins else ""


def _video_webhook(backend: CloudflareBackend, url: str, configured: str) -> str:
    """The video webhook's secret, registering the webhook at `url` unless it is already there."""
    existing = backend.get_webhook()
    if existing is not None and existing.notification_url == url:
        if existing.secret == configured:
            print(f"video webhook is registered at {url} with the configured secret; nothing to do")
        else:
            print(f"video webhook is registered at {url}; its secret (from Cloudflare) is stored")
        return existing.secret
    if existing is not None:
        print(f"replacing the account's video webhook {existing.notification_url} "
              "(Cloudflare keeps one per account)", file=sys.stderr)
    registered = backend.register_webhook(url)
    print(f"video webhook registered at {registered.notification_url}")
    return registered.secret


def cmd_manage(ns: argparse.Namespace) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "liveclass.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(["liveclass manage", *ns.args])
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="liveclass", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="migrate, load demo data, start web (and media)")
    run.add_argument("--host")
    run.add_argument("--port", type=int)
    run.add_argument("--no-demo", action="store_true", help="do not load demo data")
    run.add_argument("--no-media", action="store_true",
                     help="do not start the embedded media server (it runs as its own service)")
    run.add_argument("--workers", type=int, default=1,
                     help="web processes, one per core (more than 1 needs REDIS_URL: they share sessions through it)")
    run.set_defaults(func=cmd_run)

    media = sub.add_parser("media", help="run the embedded media server (WHIP/WHEP)", add_help=False)
    media.add_argument("args", nargs=argparse.REMAINDER)
    media.set_defaults(func=cmd_media)

    demo = sub.add_parser("demo", help="load demo data into an empty database")
    demo.set_defaults(func=cmd_demo)

    token = sub.add_parser("token", help="print a signed media token (for OBS/FFmpeg users and operators)")
    token.add_argument("--role", choices=["publish", "play", "operator"], required=True)
    token.add_argument("--input", required=True, help="input id (or * with --role operator)")
    token.add_argument("--ttl", type=int, default=3600, help="seconds (default 3600)")
    token.add_argument("--uid", help="viewer id claim (play tokens)")
    token.set_defaults(func=cmd_token)

    wallet = sub.add_parser("wallet", help="wallet balance and staff grants")
    wsub = wallet.add_subparsers(dest="action", required=True)
    grant = wsub.add_parser("grant", help="grant tokens: liveclass wallet grant EMAIL N")
    grant.add_argument("email")
    grant.add_argument("amount", type=int)
    grant.add_argument("--key", help="idempotency key: the same key grants once")
    grant.add_argument("--note")
    bal = wsub.add_parser("balance", help="print a balance")
    bal.add_argument("email")
    wallet.set_defaults(func=cmd_wallet)

    housekeeping = sub.add_parser("housekeeping", help="delete recordings past RECORDING_RETENTION_DAYS "
                                  "that are kept out of the catalog (idempotent)")
    housekeeping.set_defaults(func=cmd_housekeeping)

    check = sub.add_parser("check", help="preflight: name every setting unfit for production (exit 1), "
                           "or print ok")
    check.set_defaults(func=cmd_check)

    cloudflare = sub.add_parser("cloudflare", help="Cloudflare Stream administration (MEDIA_BACKEND=cloudflare)")
    csub = cloudflare.add_subparsers(dest="action", required=True)
    setup = csub.add_parser("setup", help="create the Stream signing key for viewers' WHEP URLs (once) and "
                            "register the video webhook, print their variables or write them to --env-file")
    setup.add_argument("--env-file", metavar="PATH",
                       help="write CLOUDFLARE_SIGNING_KEY_ID/_PEM and CLOUDFLARE_WEBHOOK_SECRET into this "
                       "environment file (mode 0600)")
    setup.add_argument("--webhook-url", metavar="URL",
                       help="where Cloudflare posts video events (default: the first CSRF_TRUSTED_ORIGINS "
                       "origin + /api/media/events)")
    rotation = setup.add_mutually_exclusive_group()
    rotation.add_argument("--rotate-key", action="store_true",
                          help="create a new key even though one is configured (then --delete-key the old one)")
    rotation.add_argument("--delete-key", metavar="ID",
                          help="revoke a retired key (refused for the configured one)")
    cloudflare.set_defaults(func=cmd_cloudflare)

    manage = sub.add_parser("manage", help="Django management commands (migrate, createsuperuser, ...)")
    manage.add_argument("args", nargs=argparse.REMAINDER)
    manage.set_defaults(func=cmd_manage)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    try:
        return int(ns.func(ns))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from liveclass.config import ConfigError

        if isinstance(exc, ConfigError):
            print(f"liveclass: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
