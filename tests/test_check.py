"""`liveclass check`: one test per problem it names, and a clean production environment passing.

Each test runs the real command (`main(["check"])`) on an environment built here from a
clean production one (the process environment's Liveclass variables are removed first,
so tests/run.py's settings do not leak in); one test runs the installed entry point."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from liveclass.cli import main
from liveclass.config import DEV_INSTRUCTOR_CODE, DEV_MEDIA_SIGNING_KEY, DEV_SECRET_KEY, MediaConfig, WebConfig

PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": "k" * 50,
    "MEDIA_SIGNING_KEY": "m" * 50,
    "MEDIA_WEBHOOK_SECRET": "w" * 64,
    "INSTRUCTOR_ACCESS_TOKEN": "instructor-code-0123",
    "ALLOWED_HOSTS": "class.example.org,127.0.0.1",
    "CSRF_TRUSTED_ORIGINS": "https://class.example.org",
    "SECURE_COOKIES": "1",
    "TRUSTED_PROXIES": "127.0.0.1",
    "MEDIA_BACKEND": "embedded",
    "MEDIA_PUBLIC_URL": "https://class.example.org",
    "MEDIA_INTERNAL_URL": "http://127.0.0.1:8001",
    "MEDIA_ICE_ADDRESSES": "1.2.3.4",  # a global address (documentation ranges are not)
    "MEDIA_UDP_PORTS": "40000-40999",
    "MEDIA_MAX_SESSIONS": "300",  # 330 ports a public address; 990 for three (a test below)
    "MEDIA_TURN_URLS": "turn:class.example.org:3478?transport=udp,turn:class.example.org:3478?transport=tcp",
    "MEDIA_TURN_SECRET": "t" * 64,
}
# A signing key's `pem` as `POST /stream/keys` returns it: base64 of an RSA private key's PEM.
SIGNING_PEM = base64.b64encode(rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption())).decode()
CLOUDFLARE = {"MEDIA_BACKEND": "cloudflare", "CLOUDFLARE_ACCOUNT_ID": "acc", "CLOUDFLARE_API_TOKEN": "tok",
              "CLOUDFLARE_STREAM_CUSTOMER_CODE": "code", "CLOUDFLARE_SIGNING_KEY_ID": "0" * 32,
              "CLOUDFLARE_SIGNING_KEY_PEM": SIGNING_PEM, "CLOUDFLARE_NOTIFICATIONS_SECRET": "n" * 64,
              "CLOUDFLARE_WEBHOOK_SECRET": "85011ed3a913c6ad5f9cf6c5573cc0a7"}


def _variables() -> set[str]:
    names: set[str] = set()
    for model in (WebConfig, MediaConfig):
        for name, field in model.model_fields.items():
            names.update(str(c) for c in (getattr(field.validation_alias, "choices", None) or [name]))
    return names


def check(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], **changes: str | None
          ) -> tuple[int, list[str]]:
    """Run `liveclass check` on PRODUCTION with `changes` (None unsets); its exit code and output lines."""
    for name in _variables():
        monkeypatch.delenv(name, raising=False)
    for name, value in {**PRODUCTION, **changes}.items():
        if value is not None:
            monkeypatch.setenv(name, value)
    code = main(["check"])
    return code, capsys.readouterr().out.splitlines()


def assert_names(code: int, lines: list[str], variable: str, words: str = "") -> None:
    assert code != 0, lines
    named = [line for line in lines if line.startswith(f"{variable}: ")]
    assert named, f"no line names {variable}: {lines}"
    assert any(words in line for line in named), (words, named)


def test_clean_production_environment_is_ok(monkeypatch, capsys):
    assert check(monkeypatch, capsys) == (0, ["ok"])


def test_debug_on(monkeypatch, capsys):
    assert_names(*check(monkeypatch, capsys, DEBUG="1"), "DEBUG", "DEBUG=0")


@pytest.mark.parametrize("name", ["SECRET_KEY", "MEDIA_SIGNING_KEY", "MEDIA_WEBHOOK_SECRET", "INSTRUCTOR_ACCESS_TOKEN"])
def test_missing_secret(monkeypatch, capsys, name):
    assert_names(*check(monkeypatch, capsys, **{name: ""}), name, "missing")


@pytest.mark.parametrize("name", ["SECRET_KEY", "MEDIA_SIGNING_KEY", "MEDIA_WEBHOOK_SECRET", "INSTRUCTOR_ACCESS_TOKEN"])
def test_development_secret(monkeypatch, capsys, name):
    # Unset: each falls back to its development default.
    assert_names(*check(monkeypatch, capsys, **{name: None}), name, "development default")


@pytest.mark.parametrize(("name", "value"), [("SECRET_KEY", DEV_SECRET_KEY),
                                             ("MEDIA_SIGNING_KEY", DEV_MEDIA_SIGNING_KEY),
                                             ("INSTRUCTOR_ACCESS_TOKEN", DEV_INSTRUCTOR_CODE)])
def test_development_secret_set_explicitly(monkeypatch, capsys, name, value):
    assert_names(*check(monkeypatch, capsys, **{name: value}), name, "development default")


@pytest.mark.parametrize("name", ["SECRET_KEY", "MEDIA_SIGNING_KEY", "MEDIA_WEBHOOK_SECRET", "INSTRUCTOR_ACCESS_TOKEN"])
def test_short_secret(monkeypatch, capsys, name):
    assert_names(*check(monkeypatch, capsys, **{name: "short-secret"}), name, "shorter than")


def test_media_public_url_not_https(monkeypatch, capsys):
    assert_names(*check(monkeypatch, capsys, MEDIA_PUBLIC_URL="http://class.example.org"), "MEDIA_PUBLIC_URL",
                 "not https")


def test_media_public_url_unset_means_local_http(monkeypatch, capsys):
    assert_names(*check(monkeypatch, capsys, MEDIA_PUBLIC_URL=None), "MEDIA_PUBLIC_URL", "http://127.0.0.1:8001")


def test_site_not_https(monkeypatch, capsys):
    code, lines = check(monkeypatch, capsys, CSRF_TRUSTED_ORIGINS="https://class.example.org,http://class.example.org")
    assert_names(code, lines, "CSRF_TRUSTED_ORIGINS", "http://class.example.org is not https")
    assert len([line for line in lines if line.startswith("CSRF_TRUSTED_ORIGINS")]) == 1


def test_missing_csrf_trusted_origins(monkeypatch, capsys):
    assert_names(*check(monkeypatch, capsys, CSRF_TRUSTED_ORIGINS=None), "CSRF_TRUSTED_ORIGINS", "empty")


@pytest.mark.parametrize("value", [None, "localhost,127.0.0.1", ""])
def test_missing_allowed_hosts(monkeypatch, capsys, value):
    code, lines = check(monkeypatch, capsys, ALLOWED_HOSTS=value)
    assert_names(code, lines, "ALLOWED_HOSTS", "only local names")
    assert len([line for line in lines if line.startswith("ALLOWED_HOSTS")]) == 1, lines


@pytest.mark.parametrize("value", ["www.example.org,127.0.0.1", ".example.com"])
def test_allowed_hosts_without_the_sites_host(monkeypatch, capsys, value):
    assert_names(*check(monkeypatch, capsys, ALLOWED_HOSTS=value), "ALLOWED_HOSTS", "lacks class.example.org")


def test_allowed_hosts_pattern_for_the_domain_and_its_subdomains(monkeypatch, capsys):
    assert check(monkeypatch, capsys, ALLOWED_HOSTS=".example.org") == (0, ["ok"])


def test_allowed_hosts_wildcard(monkeypatch, capsys):
    assert_names(*check(monkeypatch, capsys, ALLOWED_HOSTS="*"), "ALLOWED_HOSTS", "any Host")


@pytest.mark.parametrize("value", [None, "127.0.0.1", "10.0.0.5,192.168.1.2,fd00::1"])
def test_no_public_ice_address(monkeypatch, capsys, value):
    assert_names(*check(monkeypatch, capsys, MEDIA_ICE_ADDRESSES=value), "MEDIA_ICE_ADDRESSES",
                 "no public address")


def test_ice_address_not_an_address(monkeypatch, capsys):
    assert_names(*check(monkeypatch, capsys, MEDIA_ICE_ADDRESSES="1.2.3.4,class.example.org"),
                 "MEDIA_ICE_ADDRESSES", "class.example.org is not an IP address")


def test_public_ice_address_next_to_a_private_one_is_fine(monkeypatch, capsys):
    assert check(monkeypatch, capsys, MEDIA_ICE_ADDRESSES="10.0.0.5,fd00::5,2a01:4f8::1")[0] == 0


def test_behind_a_one_to_one_nat_the_public_address_is_announced(monkeypatch, capsys):
    assert check(monkeypatch, capsys, MEDIA_ICE_ADDRESSES="10.0.0.5", MEDIA_ICE_PUBLIC_ADDRESSES="1.2.3.4"
                 ) == (0, ["ok"])
    assert_names(*check(monkeypatch, capsys, MEDIA_ICE_ADDRESSES="10.0.0.5", MEDIA_ICE_PUBLIC_ADDRESSES="10.0.0.6"),
                 "MEDIA_ICE_ADDRESSES", "no public address")


def test_no_udp_port_range(monkeypatch, capsys):
    assert_names(*check(monkeypatch, capsys, MEDIA_UDP_PORTS=None), "MEDIA_UDP_PORTS", "40000-40199")


@pytest.mark.parametrize(("ports", "addresses", "fits"), [
    ("40000-40329", "1.2.3.4", True),  # 300 sessions + 10% for ICE restarts
    ("40000-40328", "1.2.3.4", False),
    ("40000-40299", "1.2.3.4", False),  # one port per session: no room for a restart
    ("40000-40659", "1.2.3.4,5.6.7.8", True),  # each ICE address takes its own port
    ("40000-40599", "1.2.3.4,5.6.7.8", False),
])
def test_udp_port_range_smaller_than_the_sessions_need(monkeypatch, capsys, ports, addresses, fits):
    result = check(monkeypatch, capsys, MEDIA_UDP_PORTS=ports, MEDIA_ICE_ADDRESSES=addresses)
    if fits:
        assert result == (0, ["ok"])
    else:
        assert_names(*result, "MEDIA_UDP_PORTS", "MEDIA_MAX_SESSIONS=300")


def test_turn_without_secret(monkeypatch, capsys):
    assert_names(*check(monkeypatch, capsys, MEDIA_TURN_SECRET=None), "MEDIA_TURN_SECRET", "MEDIA_TURN_URLS is set")


def test_short_turn_secret(monkeypatch, capsys):
    assert_names(*check(monkeypatch, capsys, MEDIA_TURN_SECRET="t" * 31), "MEDIA_TURN_SECRET", "shorter than 32")
    assert check(monkeypatch, capsys, MEDIA_TURN_SECRET="t" * 32) == (0, ["ok"])


def test_short_turn_secret_without_turn_is_not_used(monkeypatch, capsys):
    assert check(monkeypatch, capsys, MEDIA_TURN_URLS=None, MEDIA_TURN_SECRET="short") == (0, ["ok"])


def test_no_turn_at_all_is_fine(monkeypatch, capsys):
    assert check(monkeypatch, capsys, MEDIA_TURN_URLS=None, MEDIA_TURN_SECRET=None)[0] == 0


def test_secure_cookies_off(monkeypatch, capsys):
    assert_names(*check(monkeypatch, capsys, SECURE_COOKIES="0"), "SECURE_COOKIES", "not marked Secure")


def test_secure_cookies_unset_is_on_without_debug(monkeypatch, capsys):
    assert check(monkeypatch, capsys, SECURE_COOKIES=None) == (0, ["ok"])


def test_no_trusted_proxy_behind_a_local_proxy(monkeypatch, capsys):
    assert_names(*check(monkeypatch, capsys, TRUSTED_PROXIES=None), "TRUSTED_PROXIES", "TRUSTED_PROXIES=127.0.0.1")


def test_invalid_value_is_named(monkeypatch, capsys):
    assert_names(*check(monkeypatch, capsys, PORT="eighty"), "PORT")


def test_every_problem_is_named_not_just_the_first(monkeypatch, capsys):
    code, lines = check(monkeypatch, capsys, DEBUG="1", SECRET_KEY=None, MEDIA_PUBLIC_URL=None,
                        MEDIA_UDP_PORTS=None, SECURE_COOKIES="0")
    assert code != 0
    assert {line.split(":")[0] for line in lines} >= {"DEBUG", "SECRET_KEY", "MEDIA_PUBLIC_URL", "MEDIA_UDP_PORTS",
                                                      "SECURE_COOKIES"}, lines


def test_cloudflare_checks_its_variables_instead_of_the_media_servers(monkeypatch, capsys):
    # The embedded media server's settings do not matter when Cloudflare carries the media.
    clean = check(monkeypatch, capsys, **CLOUDFLARE, MEDIA_PUBLIC_URL=None, MEDIA_ICE_ADDRESSES=None,
                  MEDIA_UDP_PORTS=None, MEDIA_TURN_SECRET=None)
    assert clean == (0, ["ok"])
    for name in ("CLOUDFLARE_ACCOUNT_ID", "CLOUDFLARE_API_TOKEN", "CLOUDFLARE_STREAM_CUSTOMER_CODE"):
        assert_names(*check(monkeypatch, capsys, **{**CLOUDFLARE, name: None}), name, "MEDIA_BACKEND=cloudflare")
    assert_names(*check(monkeypatch, capsys, **CLOUDFLARE, CLOUDFLARE_API_BASE="http://127.0.0.1:9999"),
                 "CLOUDFLARE_API_BASE", "not https")


def test_cloudflare_without_a_usable_signing_key_is_refused(monkeypatch, capsys):
    # Live inputs require signed URLs: without the key no viewer could be given a WHEP URL.
    for name in ("CLOUDFLARE_SIGNING_KEY_ID", "CLOUDFLARE_SIGNING_KEY_PEM"):
        assert_names(*check(monkeypatch, capsys, **{**CLOUDFLARE, name: None}), name, "liveclass cloudflare setup")
    assert_names(*check(monkeypatch, capsys, **{**CLOUDFLARE, "CLOUDFLARE_SIGNING_KEY_PEM": "bm90IGEga2V5"}),
                 "CLOUDFLARE_SIGNING_KEY_PEM", "unusable")


def test_cloudflare_names_each_missing_or_shared_webhook_secret(monkeypatch, capsys):
    # Notifications (cf-webhook-auth) and the video webhook (Webhook-Signature) each have their
    # own secret; without one, that sender's events are all refused.
    assert_names(*check(monkeypatch, capsys, **{**CLOUDFLARE, "CLOUDFLARE_NOTIFICATIONS_SECRET": None}),
                 "CLOUDFLARE_NOTIFICATIONS_SECRET", "Notifications webhook destination")
    assert_names(*check(monkeypatch, capsys, **{**CLOUDFLARE, "CLOUDFLARE_NOTIFICATIONS_SECRET": "short"}),
                 "CLOUDFLARE_NOTIFICATIONS_SECRET", "shorter than 32")
    assert_names(*check(monkeypatch, capsys, **{**CLOUDFLARE, "CLOUDFLARE_WEBHOOK_SECRET": None}),
                 "CLOUDFLARE_WEBHOOK_SECRET", "liveclass cloudflare setup")
    assert_names(*check(monkeypatch, capsys, **{**CLOUDFLARE, "CLOUDFLARE_NOTIFICATIONS_SECRET": "w" * 64}),
                 "CLOUDFLARE_NOTIFICATIONS_SECRET", "equals MEDIA_WEBHOOK_SECRET")
    assert_names(*check(monkeypatch, capsys, **{**CLOUDFLARE, "CLOUDFLARE_WEBHOOK_SECRET": "w" * 64}),
                 "CLOUDFLARE_WEBHOOK_SECRET", "equals MEDIA_WEBHOOK_SECRET")
    # The embedded backend needs neither.
    assert check(monkeypatch, capsys) == (0, ["ok"])


def test_the_installed_command_exits_non_zero_naming_each_problem(tmp_path: Path):
    command = Path(sys.executable).parent / "liveclass"
    keep = {name: os.environ[name] for name in ("PATH", "LANG") if name in os.environ}
    base = {**keep, "HOME": str(tmp_path), **PRODUCTION}
    done = subprocess.run([str(command), "check"], env=base, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, "ok\n"), done.stderr
    bad = {**base, "DEBUG": "1", "MEDIA_UDP_PORTS": ""}
    done = subprocess.run([str(command), "check"], env=bad, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert [line.split(":")[0] for line in done.stdout.splitlines()] == ["DEBUG", "MEDIA_UDP_PORTS"], done.stdout
    assert "2 problem(s)" in done.stderr
