from __future__ import annotations

import pytest

from liveclass.cli import main
from liveclass.config import media_config
from liveclass.media.tokens import verify_token
from liveclass.wallet import services as wallet


def test_wallet_grant_and_balance(make_user, capsys):
    user = make_user("dancer@example.test")
    assert main(["wallet", "grant", "dancer@example.test", "7", "--key", "k1"]) == 0
    assert main(["wallet", "grant", "dancer@example.test", "7", "--key", "k1"]) == 0  # same key: once
    assert wallet.balance(user) == 7
    assert main(["wallet", "balance", "DANCER@example.test"]) == 0
    assert capsys.readouterr().out.strip().endswith("dancer@example.test: 7 tokens")


def test_wallet_grant_unknown_user_fails_cleanly(db, capsys):
    assert main(["wallet", "grant", "nobody@example.test", "5"]) == 2
    assert "no user" in capsys.readouterr().err


def test_token_prints_a_verifiable_media_token(capsys):
    assert main(["token", "--role", "publish", "--input", "abc", "--ttl", "60"]) == 0
    token = capsys.readouterr().out.strip()
    claims = verify_token(media_config().MEDIA_SIGNING_KEY, token, role="publish", sub="abc")
    assert claims.sub == "abc"


def test_token_rejects_unknown_roles(capsys):
    with pytest.raises(SystemExit):
        main(["token", "--role", "admin", "--input", "abc"])


def test_demo_loads_once_with_classes_to_browse_and_a_chat_to_join(db, capsys):
    from django.contrib.auth import authenticate

    from liveclass.chat.models import ChatMessage
    from liveclass.demo import DEMO_INSTRUCTOR, DEMO_USER
    from liveclass.streams.models import LiveStreamSession

    assert main(["demo"]) == 0
    classes = LiveStreamSession.objects.filter(status="scheduled").count()
    assert classes >= 3
    assert ChatMessage.objects.filter(user__email=DEMO_INSTRUCTOR[0]).count() == classes
    assert authenticate(email=DEMO_USER[0], password=DEMO_USER[1]) is not None
    assert wallet.balance(authenticate(email=DEMO_USER[0], password=DEMO_USER[1])) > 0
    assert main(["demo"]) == 0  # a second run changes nothing
    assert LiveStreamSession.objects.count() == classes


# -- liveclass cloudflare setup (against the loopback fake Cloudflare API) ---------------


@pytest.fixture
def cloudflare_env(cloudflare_fake, monkeypatch):
    """The Cloudflare credentials in the environment, as an operator sets them before setup."""
    from liveclass.config import web_config

    for name, value in (("CLOUDFLARE_API_BASE", cloudflare_fake.url),
                        ("CLOUDFLARE_ACCOUNT_ID", cloudflare_fake.account_id),
                        ("CLOUDFLARE_API_TOKEN", cloudflare_fake.api_token),
                        ("CLOUDFLARE_STREAM_CUSTOMER_CODE", cloudflare_fake.customer_code)):
        monkeypatch.setenv(name, value)
    for name in ("CLOUDFLARE_SIGNING_KEY_ID", "CLOUDFLARE_SIGNING_KEY_PEM", "CLOUDFLARE_WEBHOOK_SECRET",
                 "CSRF_TRUSTED_ORIGINS"):
        monkeypatch.delenv(name, raising=False)
    web_config.cache_clear()
    yield cloudflare_fake
    web_config.cache_clear()


def _env_lines(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def test_cloudflare_setup_prints_a_new_key_once(cloudflare_env, monkeypatch, capsys):
    from liveclass.config import web_config
    from liveclass.mediabackends.cloudflare import load_signing_key

    assert main(["cloudflare", "setup"]) == 0
    out, err = capsys.readouterr()
    printed = _env_lines(out)
    assert set(printed) == {"CLOUDFLARE_SIGNING_KEY_ID", "CLOUDFLARE_SIGNING_KEY_PEM"}
    assert "video webhook not registered: pass --webhook-url" in err  # no site URL known
    assert cloudflare_env.webhook() is None
    assert cloudflare_env.signing_key_ids() == {printed["CLOUDFLARE_SIGNING_KEY_ID"]}
    load_signing_key(printed["CLOUDFLARE_SIGNING_KEY_PEM"])

    for name, value in printed.items():  # the operator keeps them in the environment
        monkeypatch.setenv(name, value)
    web_config.cache_clear()
    assert main(["cloudflare", "setup"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert cloudflare_env.signing_key_ids() == {printed["CLOUDFLARE_SIGNING_KEY_ID"]}, "no second key"


def test_cloudflare_setup_writes_the_env_file_and_rotates_in_two_steps(cloudflare_env, tmp_path, capsys):
    env_file = tmp_path / "liveclass.env"
    env_file.write_text("DEBUG=0\nCLOUDFLARE_SIGNING_KEY_ID=\n#CLOUDFLARE_SIGNING_KEY_PEM=\nPORT=8000\n")
    env_file.chmod(0o644)

    assert main(["cloudflare", "setup", "--env-file", str(env_file)]) == 0
    first = _env_lines(env_file.read_text())
    lines = env_file.read_text().splitlines()
    assert lines[0] == "DEBUG=0" and lines[2:4] == ["#CLOUDFLARE_SIGNING_KEY_PEM=", "PORT=8000"]
    assert lines[1] == f"CLOUDFLARE_SIGNING_KEY_ID={first['CLOUDFLARE_SIGNING_KEY_ID']}"
    assert env_file.stat().st_mode & 0o777 == 0o600
    old = first["CLOUDFLARE_SIGNING_KEY_ID"]
    assert first["CLOUDFLARE_SIGNING_KEY_PEM"] not in capsys.readouterr().out, "the secret goes to the file only"

    assert main(["cloudflare", "setup", "--env-file", str(env_file)]) == 0  # configured: nothing to do
    assert cloudflare_env.signing_key_ids() == {old}

    assert main(["cloudflare", "setup", "--env-file", str(env_file), "--rotate-key"]) == 0
    new = _env_lines(env_file.read_text())["CLOUDFLARE_SIGNING_KEY_ID"]
    assert new != old and cloudflare_env.signing_key_ids() == {old, new}  # old URLs still play
    assert f"--delete-key {old}" in capsys.readouterr().err

    assert main(["cloudflare", "setup", "--env-file", str(env_file), "--delete-key", new]) == 2  # in use
    assert main(["cloudflare", "setup", "--env-file", str(env_file), "--delete-key", old]) == 0
    assert cloudflare_env.signing_key_ids() == {new}
    assert main(["cloudflare", "setup", "--env-file", str(env_file), "--delete-key", old]) == 0  # idempotent


def test_cloudflare_setup_names_what_is_missing(cloudflare_env, monkeypatch, tmp_path, capsys):
    from liveclass.config import web_config

    env_file = tmp_path / "liveclass.env"
    env_file.write_text("CLOUDFLARE_SIGNING_KEY_ID=0123456789abcdef0123456789abcdef\n")
    assert main(["cloudflare", "setup", "--env-file", str(env_file)]) == 1
    assert "does not exist on Cloudflare" in capsys.readouterr().err

    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "")
    web_config.cache_clear()
    assert main(["cloudflare", "setup"]) == 2
    assert "CLOUDFLARE_API_TOKEN" in capsys.readouterr().err


def test_cloudflare_setup_registers_the_video_webhook_and_stores_its_secret(cloudflare_env, monkeypatch, tmp_path,
                                                                           capsys):
    """PUT /stream/webhook returns the secret Cloudflare generates (using-webhooks.mdx); setup
    stores it like the signing key: printed, or written to --env-file."""
    from liveclass.config import web_config

    url = "https://class.example.org/api/media/events"
    monkeypatch.setenv("CSRF_TRUSTED_ORIGINS", "https://class.example.org")  # the default URL comes from it
    web_config.cache_clear()
    assert main(["cloudflare", "setup"]) == 0
    printed = _env_lines(capsys.readouterr().out)
    registered = cloudflare_env.webhook()
    assert registered is not None and registered["notificationUrl"] == url
    assert printed["CLOUDFLARE_WEBHOOK_SECRET"] == registered["secret"]

    env_file = tmp_path / "liveclass.env"
    env_file.write_text(f"CLOUDFLARE_SIGNING_KEY_ID={printed['CLOUDFLARE_SIGNING_KEY_ID']}\n"
                        f"CLOUDFLARE_WEBHOOK_SECRET={registered['secret']}\n")
    puts = sum(1 for r in cloudflare_env.requests if r.method == "PUT")
    assert main(["cloudflare", "setup", "--env-file", str(env_file)]) == 0  # registered with this secret
    assert "nothing to do" in capsys.readouterr().out
    assert sum(1 for r in cloudflare_env.requests if r.method == "PUT") == puts
    assert cloudflare_env.webhook() == registered

    # A lost secret is recovered from GET /stream/webhook, without re-registering (which would
    # change it under a running web).
    env_file.write_text(f"CLOUDFLARE_SIGNING_KEY_ID={printed['CLOUDFLARE_SIGNING_KEY_ID']}\n")
    assert main(["cloudflare", "setup", "--env-file", str(env_file)]) == 0
    out = capsys.readouterr().out
    assert registered["secret"] not in out, "the secret goes to the file only"
    assert _env_lines(env_file.read_text())["CLOUDFLARE_WEBHOOK_SECRET"] == registered["secret"]
    assert cloudflare_env.webhook() == registered

    # Another URL: the account's one webhook moves there, with the new secret stored.
    moved = "https://new.example.org/api/media/events"
    assert main(["cloudflare", "setup", "--env-file", str(env_file), "--webhook-url", moved]) == 0
    assert f"replacing the account's video webhook {url}" in capsys.readouterr().err
    now = cloudflare_env.webhook()
    assert now is not None and now["notificationUrl"] == moved
    assert _env_lines(env_file.read_text())["CLOUDFLARE_WEBHOOK_SECRET"] == now["secret"]
    assert env_file.stat().st_mode & 0o777 == 0o600

    # Cloudflare refuses the URL: the key made before that is still handed out (its pem is shown once).
    assert main(["cloudflare", "setup", "--webhook-url", "ftp://nowhere"]) == 1
    out, err = capsys.readouterr()
    assert "notificationUrl" in err
    made = _env_lines(out)
    assert set(made) == {"CLOUDFLARE_SIGNING_KEY_ID", "CLOUDFLARE_SIGNING_KEY_PEM"}
    assert made["CLOUDFLARE_SIGNING_KEY_ID"] in cloudflare_env.signing_key_ids()
