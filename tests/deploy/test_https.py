"""A live class over HTTPS, deployed the way docs/deploy.md deploys it.

Web and the media server are started with the commands of deploy/systemd/*.service, on the
environment of deploy/liveclass.env.example with what a loopback test must change (ports,
test secrets, a temporary SQLite database and Redis, 127.0.0.1 as the ICE address). Caddy
runs deploy/Caddyfile itself, with Caddy's internal CA (its data in a temporary home) on
127.0.0.1 high ports. Chromium reaches the site as https://liveclass.test:<port> (a
host-resolver rule, not loopback by name), with Caddy's root CA trusted in the NSS
database of its own temporary home. The instructor broadcasts from the page (the camera
needs a secure context), an enrolled viewer watches through WHEP, and no page reports a
Content-Security-Policy violation.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from liveclass.demo import DEMO_INSTRUCTOR, DEMO_USER
from tests.deploy.units import (
    CADDY_ENV_TEMPLATE,
    CADDYFILE,
    exec_start,
    template_environment,
    unit_environment,
)
from tests.e2e.browser import CHROMIUM, CHROMIUM_ARGS, MEDIA_TIMEOUT_MS, TIMEOUT_MS, new_context, start_broadcast
from tests.e2e.test_broadcast_watch import assert_playing
from tests.run import answers_200, free_port, redis_server, serve

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(300),  # the first test also starts Redis, web, the media server and Caddy
    pytest.mark.skipif(shutil.which("caddy") is None,
                       reason="caddy is not installed: `make test` installs Debian's caddy package"),
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing: install Debian's chromium package"),
]

DOMAIN = "liveclass.test"
LIVECLASS = Path(sys.executable).parent / "liveclass"
# Secrets for this test only: long, random-looking, and not the development defaults.
SECRETS = {
    "SECRET_KEY": "https-test-secret-key-0123456789abcdef0123456789abcdef",
    "MEDIA_SIGNING_KEY": "https-test-media-signing-key-0123456789abcdef",
    "MEDIA_WEBHOOK_SECRET": "https-test-webhook-secret-0123456789abcdef",
    "INSTRUCTOR_ACCESS_TOKEN": "https-test-instructor-code",
}
CSP_WATCH = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push({directive: e.violatedDirective, blocked: e.blockedURI, source: e.sourceFile});
});
"""


@dataclass
class Site:
    base: str
    https_port: int
    root_ca: Path
    env: dict[str, str]
    work: Path


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to the site's name on 127.0.0.1 (the name is only in Chromium's resolver rule)."""

    def connect(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def https_get(site_port: int, root_ca: Path, path: str) -> http.client.HTTPResponse:
    """GET through Caddy, verifying its certificate against its internal CA."""
    context = ssl.create_default_context(cafile=str(root_ca))
    connection = _PinnedHTTPS(DOMAIN, site_port, context=context, timeout=5)
    connection.request("GET", path)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def _root_ca(data_home: Path) -> Path:
    return data_home / "caddy" / "pki" / "authorities" / "local" / "root.crt"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    work = tmp_path_factory.mktemp("https")
    web_port, media_port, https_port, http_port = (free_port() for _ in range(4))
    base = f"https://{DOMAIN}:{https_port}"
    keep = {name: os.environ[name] for name in ("PATH", "LANG", "LC_ALL") if name in os.environ}
    with contextlib.ExitStack() as stack:
        redis_url, _ = stack.enter_context(redis_server(work))
        env = {
            **keep,
            "HOME": str(work),
            # nproc (the web unit's worker count) honours it: two workers, whatever the machine.
            "OMP_NUM_THREADS": "2",
            **template_environment(),
            **SECRETS,
            # What differs on loopback from the template's production values:
            "LIVECLASS_DATA_DIR": str(work / "data"),
            "DATABASE_URL": "",
            "REDIS_URL": redis_url,
            "PORT": str(web_port),
            "MEDIA_PORT": str(media_port),
            "ALLOWED_HOSTS": f"{DOMAIN},127.0.0.1",
            "CSRF_TRUSTED_ORIGINS": base,
            "MEDIA_PUBLIC_URL": base,
            "MEDIA_INTERNAL_URL": f"http://127.0.0.1:{media_port}",
            "MEDIA_WEBHOOK_URL": f"http://127.0.0.1:{web_port}/api/media/events",
            "MEDIA_ICE_ADDRESSES": "127.0.0.1",
            "MEDIA_ICE_ALLOW_PRIVATE": "1",  # Chromium's candidates are on loopback
            "MEDIA_UDP_PORTS": "43200-43249",
            "MEDIA_MAX_SESSIONS": "45",  # what 50 ports carry (liveclass check's rule)
            "MEDIA_TURN_URLS": "",  # no coturn in this test
            "MEDIA_TURN_SECRET": "",
            "MEDIA_RECORDINGS_DIR": str(work / "recordings"),
            "MEDIA_STATE_DIR": str(work / "media-state"),  # never the template's /var/lib path
            "MEDIA_RECORDING_ENABLED": "0",  # CPU: this test is about the edge, not recording
        }
        web_env = {**env, **unit_environment("liveclass-web.service")}
        stack.enter_context(serve(exec_start("liveclass-web.service", web_env), web_env, work / "web.log",
                                  answers_200(f"http://127.0.0.1:{web_port}/streams"), "liveclass-web", 120))
        subprocess.run([str(LIVECLASS), "demo"], env=env, check=True, capture_output=True, timeout=120)
        stack.enter_context(serve(exec_start("liveclass-media.service", env), env, work / "media.log",
                                  answers_200(f"http://127.0.0.1:{media_port}/healthz"), "liveclass-media"))
        data_home = work / "caddy-data"
        caddy_env = {
            **keep, "HOME": str(work), "XDG_DATA_HOME": str(data_home), "XDG_CONFIG_HOME": str(work / "caddy-config"),
            **template_environment(CADDY_ENV_TEMPLATE),
            "LIVECLASS_DOMAIN": DOMAIN, "LIVECLASS_TLS": "internal",
            "HTTPS_PORT": str(https_port), "HTTP_PORT": str(http_port),
            "PORT": str(web_port), "MEDIA_PORT": str(media_port),
            # Loopback only, no admin endpoint, and never touch the system's trust store.
            "CADDY_GLOBAL_OPTIONS": "admin off\nskip_install_trust\ndefault_bind 127.0.0.1",
        }

        def tls_ready() -> bool:
            if not _root_ca(data_home).exists():
                return False
            try:
                return https_get(https_port, _root_ca(data_home), "/streams").status == 200
            except http.client.HTTPException:  # Caddy still starting
                return False

        stack.enter_context(serve(["caddy", "run", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
                                  caddy_env, work / "caddy.log", tls_ready, "caddy", 60))
        yield Site(base, https_port, _root_ca(data_home), env, work)


def test_caddy_routes_media_to_the_media_server_and_keeps_operator_routes_private(site: Site) -> None:
    page = https_get(site.https_port, site.root_ca, "/streams")
    assert page.status == 200
    assert "max-age=" in (page.getheader("Strict-Transport-Security") or "")  # Django saw https via Caddy
    assert "script-src 'self'" in (page.getheader("Content-Security-Policy") or "")
    # WHEP without a token: the media server's own refusal, not a web page.
    whep = https_get(site.https_port, site.root_ca, "/whep/nope")
    assert whep.status in (401, 405), whep.status
    # Operator and monitoring routes are not proxied: web answers them (404).
    for path in ("/inputs/nope", "/metrics", "/healthz"):
        assert https_get(site.https_port, site.root_ca, path).status == 404, path


def test_check_names_only_what_loopback_changes(site: Site) -> None:
    done = subprocess.run([str(LIVECLASS), "check"], env=site.env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert [line.split(":")[0] for line in done.stdout.splitlines()] == ["MEDIA_ICE_ADDRESSES"], done.stdout


@pytest.fixture(scope="module")
def chromium(site: Site) -> Iterator[Browser]:
    certutil = shutil.which("certutil")
    if certutil is None:
        # Ignoring certificate errors instead would prove nothing about the deployed TLS.
        pytest.skip("certutil is missing (Caddy's CA cannot be trusted in Chromium): "
                    "install libnss3-tools (make test does)")
    home = site.work / "chromium-home"
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    # Chromium on Linux trusts the roots in $HOME/.pki/nssdb: Caddy's CA, as a user would add it.
    subprocess.run([certutil, "-d", f"sql:{nssdb}", "-N", "--empty-password"], check=True)
    subprocess.run([certutil, "-d", f"sql:{nssdb}", "-A", "-t", "C,,", "-n", "Caddy local CA (test)",
                    "-i", str(site.root_ca)], check=True)
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # see tests/e2e/conftest.py: Playwright's running loop
    manager = sync_playwright().start()
    try:
        browser = manager.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=[*CHROMIUM_ARGS, f"--host-resolver-rules=MAP {DOMAIN} 127.0.0.1"],
            env={**os.environ, "HOME": str(home)},
        )
        expect.set_options(timeout=TIMEOUT_MS)
        yield browser
        browser.close()
    finally:
        manager.stop()
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@dataclass
class Watched:
    """A signed-in page and everything it reported about the Content-Security-Policy."""

    page: Page
    context: BrowserContext
    console: list[str]

    def csp_violations(self) -> list[Any]:
        reported = self.page.evaluate("window.__cspViolations")
        logged = [text for text in self.console if "Content Security Policy" in text or "Content-Security" in text]
        return [*reported, *logged]


@pytest.fixture
def signed_in(chromium: Browser, site: Site) -> Iterator[Callable[[tuple[str, str]], Watched]]:
    opened: list[BrowserContext] = []

    def sign_in(account: tuple[str, str]) -> Watched:
        context = new_context(chromium, permissions=["camera", "microphone"])
        opened.append(context)
        context.add_init_script(CSP_WATCH)
        console: list[str] = []
        page = context.new_page()
        page.on("console", lambda message: console.append(message.text))
        page.goto(f"{site.base}/accounts/login/")
        form = page.locator("main form")
        form.get_by_label("Email").fill(account[0])
        form.get_by_label("Password").fill(account[1])
        # A CSRF-checked POST over https: the origin, the Secure cookies, the forwarded scheme.
        form.get_by_role("button", name=re.compile(r"^sign in$", re.IGNORECASE)).click()
        expect(page.get_by_role("button", name="Sign out")).to_be_visible()
        return Watched(page, context, console)

    yield sign_in
    for context in opened:
        context.close()


@dataclass(frozen=True)
class StreamRef:
    pk: int


def test_instructor_broadcasts_and_enrolled_viewer_watches_over_https(
    site: Site, signed_in: Callable[[tuple[str, str]], Watched]
) -> None:
    viewer = signed_in(DEMO_USER)
    streams = viewer.page.evaluate("fetch('/api/streams').then((r) => r.json())")
    stream = StreamRef(next(s["id"] for s in streams if s["title"] == "Morning Cardio Dance"))
    viewer.page.goto(f"{site.base}/streams/{stream.pk}")
    viewer.page.get_by_role("button", name="Enroll for 2 tokens", exact=True).click()
    expect(viewer.page.get_by_role("status")).to_contain_text("You're enrolled")
    session = next(c for c in viewer.context.cookies() if c["name"] == "sessionid")
    assert session["secure"] and session["httpOnly"], session

    studio = signed_in(DEMO_INSTRUCTOR)
    studio.page.goto(f"{site.base}/instructor/streams/{stream.pk}/broadcast")
    assert studio.page.evaluate("window.isSecureContext") is True
    start_broadcast(studio.page, site.base, stream)  # type: ignore[arg-type]  # it only reads .pk
    studio.page.get_by_test_id("mark-live").click()
    expect(studio.page.get_by_test_id("class-status")).to_have_text("Live")

    viewer.page.goto(f"{site.base}/streams/{stream.pk}/watch")
    assert viewer.page.evaluate("window.isSecureContext") is True
    assert_playing(viewer.page)
    # The WHEP session went through Caddy on the site's own origin.
    whep = viewer.page.evaluate("performance.getEntriesByType('resource').map((e) => e.name)")
    assert any(url.startswith(f"{site.base}/whep/") for url in whep), whep
    expect(studio.page.get_by_test_id("stat-viewers")).to_have_text("1", timeout=MEDIA_TIMEOUT_MS)

    for watched in (studio, viewer):
        assert_only_the_control_violates(watched)


def assert_only_the_control_violates(watched: Watched) -> None:
    """No CSP violation on the page but a control: an inline script (what the policy forbids)
    added now. Its report proves the watch is not blind, and since the browser reports
    violations in order, a late report of anything the page did would come before it."""
    with watched.page.expect_console_message(lambda m: "Content Security Policy" in m.text):
        watched.page.evaluate("""() => {
            const s = document.createElement("script"); s.textContent = "window.__inline = 1";
            document.body.append(s);
        }""")
    watched.page.wait_for_function("window.__cspViolations.length > 0")
    assert watched.page.evaluate("window.__inline") is None
    violations = watched.csp_violations()  # the event's report, then the console's line
    assert len(violations) == 2, violations
    assert "script-src" in violations[0]["directive"] and violations[0]["blocked"] == "inline", violations
    assert "inline script" in violations[1], violations
