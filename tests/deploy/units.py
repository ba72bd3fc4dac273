"""What the deployment tests read from deploy/: the systemd units' commands and the
environment template, so the tests run exactly what the guide installs."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNITS = DEPLOY / "systemd"
CADDYFILE = DEPLOY / "Caddyfile"
ENV_TEMPLATE = DEPLOY / "liveclass.env.example"
CADDY_ENV_TEMPLATE = DEPLOY / "caddy.env.example"
ENV_FILE = "/etc/liveclass/liveclass.env"
INSTALLED_VENV = "/opt/liveclass/.venv/bin/"  # where docs/deploy.md installs Liveclass


def unit_settings(name: str) -> dict[str, list[str]]:
    """A unit file's `Key=value` lines (every value of a repeated key, in order)."""
    settings: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def unit_environment(name: str) -> dict[str, str]:
    """The unit's own `Environment=` assignments."""
    pairs = (item.split("=", 1) for value in unit_settings(name).get("Environment", [])
             for item in shlex.split(value))
    return dict(pairs)  # type: ignore[arg-type]


def exec_start(name: str, env: dict[str, str]) -> list[str]:
    """The unit's ExecStart as argv, the way systemd runs it: `${VAR}` from the environment,
    `$$` a literal `$`; the installed virtualenv replaced by this checkout's."""
    (command,) = unit_settings(name)["ExecStart"]
    argv = []
    for word in shlex.split(command):
        word = re.sub(r"\$\{(\w+)\}", lambda m: env.get(m.group(1), ""), word)
        word = word.replace("$$", "$").replace(INSTALLED_VENV, f"{Path(sys.executable).parent}/")
        argv.append(word)
    return argv


def template_assignments() -> dict[str, str]:
    """The environment template's assignments; commented `#NAME=default` lines included."""
    found: dict[str, str] = {}
    for line in ENV_TEMPLATE.read_text().splitlines():
        match = re.match(r"^#?([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


def template_environment(template: Path = ENV_TEMPLATE) -> dict[str, str]:
    """The values an environment template sets (uncommented lines only), as systemd would read them."""
    return {name: value for line in template.read_text().splitlines()
            if (m := re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)) for name, value in [m.groups()]}
