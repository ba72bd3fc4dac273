"""deploy/ is what docs/deploy.md installs: these keep it in step with the code."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from django.urls import Resolver404, resolve

from liveclass.config import MediaConfig, WebConfig
from tests.deploy.units import (
    CADDY_ENV_TEMPLATE,
    CADDYFILE,
    ENV_FILE,
    exec_start,
    template_assignments,
    template_environment,
    unit_settings,
)

LIVECLASS_UNITS = ["liveclass-web.service", "liveclass-media.service", "liveclass-housekeeping.service"]


def _config_names() -> dict[str, list[str]]:
    """Each config field's environment names (a field with aliases may be set by any)."""
    names: dict[str, list[str]] = {}
    for model in (WebConfig, MediaConfig):
        for name, field in model.model_fields.items():
            names[name] = [str(c) for c in (getattr(field.validation_alias, "choices", None) or [name])]
    return names


def test_the_environment_template_lists_every_variable_and_nothing_else():
    listed = set(template_assignments())
    missing = [choices[0] for choices in _config_names().values() if not listed & set(choices)]
    assert not missing, f"deploy/liveclass.env.example misses: {missing}"
    known = {env for choices in _config_names().values() for env in choices}
    assert listed <= known, f"not Liveclass variables: {sorted(listed - known)}"


def test_every_unit_reads_the_one_environment_file():
    for name in LIVECLASS_UNITS:
        assert unit_settings(name)["EnvironmentFile"] == [ENV_FILE], name


def test_the_units_run_the_liveclass_commands():
    env: dict[str, str] = {}
    assert exec_start("liveclass-media.service", env)[1:] == ["media"]
    assert exec_start("liveclass-housekeeping.service", env)[1:] == ["housekeeping"]
    web = exec_start("liveclass-web.service", env)
    assert web[:2] == ["/bin/sh", "-c"] and " run --no-demo --no-media --workers \"$(nproc)\"" in web[2], web
    timer = unit_settings("liveclass-housekeeping.timer")
    assert timer["OnCalendar"] == ["daily"] and timer["Persistent"] == ["true"]


@pytest.mark.parametrize("path", ["/whip/abc", "/whep/abc/def", "/recordings/abc/index.m3u8"])
def test_the_media_prefixes_caddy_proxies_are_not_web_urls(path):
    with pytest.raises(Resolver404):
        resolve(path)


@pytest.mark.skipif(shutil.which("caddy") is None, reason="caddy is not installed (make test installs it)")
def test_the_caddyfile_with_production_defaults(tmp_path):
    # What the guide installs: deploy/caddy.env.example as Caddy's only Liveclass variables.
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), **template_environment(CADDY_ENV_TEMPLATE)}
    done = subprocess.run(["caddy", "adapt", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
                          env=env, capture_output=True, text=True, timeout=30, check=True)
    config = json.loads(done.stdout)
    server = config["apps"]["http"]["servers"]["srv0"]
    assert server["listen"] == [":443"]
    assert config["apps"]["http"].get("http_port", 80) == 80
    text = json.dumps(server)
    assert '"host": ["class.example.org"]' in text
    assert '"dial": "127.0.0.1:8000"' in text and '"dial": "127.0.0.1:8001"' in text
    (policy,) = config["apps"]["tls"]["automation"]["policies"]
    assert policy["subjects"] == ["class.example.org"]
    assert all(issuer["module"] == "acme" or issuer["module"] == "zerossl" for issuer in policy["issuers"])
    assert "admin" not in config  # the admin endpoint stays on (Debian's `systemctl reload caddy` uses it)
