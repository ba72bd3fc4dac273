from __future__ import annotations

import re
from pathlib import Path

import pytest

from liveclass.config import DEV_MEDIA_SIGNING_KEY, ConfigError, MediaConfig, WebConfig, media_config_from

README = Path(__file__).resolve().parents[1] / "README.md"
GOOD = {
    "SECRET_KEY": "x" * 40, "MEDIA_SIGNING_KEY": "y" * 40, "MEDIA_WEBHOOK_SECRET": "z" * 20,
    "INSTRUCTOR_ACCESS_TOKEN": "a-real-code",
}


def _config(monkeypatch: pytest.MonkeyPatch, **env: str) -> WebConfig:
    for name in (*GOOD, "DEBUG", "MEDIA_BACKEND", "CLOUDFLARE_ACCOUNT_ID", "CLOUDFLARE_API_TOKEN",
                 "CLOUDFLARE_STREAM_CUSTOMER_CODE", "NEXT_PUBLIC_CLOUDFLARE_STREAM_CUSTOMER_CODE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return WebConfig()


@pytest.mark.parametrize("missing", list(GOOD))
def test_outside_debug_a_missing_secret_refuses_to_start_naming_it(monkeypatch, missing):
    env = {k: v for k, v in GOOD.items() if k != missing}
    with pytest.raises(ConfigError, match=missing):
        _config(monkeypatch, **env).check()


def test_debug_mode_runs_on_dev_defaults(monkeypatch):
    _config(monkeypatch, DEBUG="1").check()


def test_short_secret_key_is_refused(monkeypatch):
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        _config(monkeypatch, **{**GOOD, "SECRET_KEY": "short"}).check()


def test_original_product_variable_names_are_accepted(monkeypatch):
    config = _config(monkeypatch, **GOOD, MEDIA_BACKEND="cloudflare", CLOUDFLARE_ACCOUNT_ID="acc",
                     CLOUDFLARE_API_TOKEN="tok", NEXT_PUBLIC_CLOUDFLARE_STREAM_CUSTOMER_CODE="abc123")
    assert config.CLOUDFLARE_STREAM_CUSTOMER_CODE == "abc123"
    config.check()


def test_cloudflare_backend_needs_its_credentials(monkeypatch):
    with pytest.raises(ConfigError, match="CLOUDFLARE_ACCOUNT_ID"):
        _config(monkeypatch, **GOOD, MEDIA_BACKEND="cloudflare").check()


def _env_names(model: type) -> set[str]:
    names = set()
    for name, field in model.model_fields.items():
        alias = field.validation_alias
        choices = getattr(alias, "choices", None)
        names.update(choices if choices else [name])
    return names


def test_readme_documents_every_environment_variable():
    documented = set(re.findall(r"^\| `([A-Z_0-9]+)`", README.read_text(), flags=re.M))
    missing = (_env_names(WebConfig) | _env_names(MediaConfig)) - documented
    assert not missing, f"README.md does not document: {sorted(missing)}"


def test_web_and_media_share_one_definition_of_their_common_variables():
    shared = set(WebConfig.model_fields) & set(MediaConfig.model_fields)
    assert shared == {"DEBUG", "MEDIA_PORT", "MEDIA_PUBLIC_URL", "MEDIA_SIGNING_KEY", "MEDIA_WEBHOOK_SECRET",
                      "TRUSTED_PROXIES"}
    for name in shared:
        web, media = WebConfig.model_fields[name], MediaConfig.model_fields[name]
        assert (web.default, web.description) == (media.default, media.description), name


def test_media_server_refuses_development_secrets_outside_debug():
    with pytest.raises(ConfigError, match="MEDIA_SIGNING_KEY"):
        media_config_from({}).check()
    assert media_config_from({"DEBUG": "1"}).signing_key == DEV_MEDIA_SIGNING_KEY
    hooked = {"MEDIA_SIGNING_KEY": "k" * 40, "MEDIA_WEBHOOK_URL": "http://127.0.0.1:8000/api/media/events"}
    with pytest.raises(ConfigError, match="MEDIA_WEBHOOK_SECRET"):
        media_config_from(hooked).check()
    media_config_from({**hooked, "MEDIA_WEBHOOK_SECRET": "s"}).check()
    with pytest.raises(ConfigError, match="MEDIA_ICE_SERVERS"):
        media_config_from({**hooked, "MEDIA_WEBHOOK_SECRET": "s", "MEDIA_ICE_SERVERS": "[1]"}).check()
