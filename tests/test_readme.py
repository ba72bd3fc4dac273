"""The README is the newcomer's map: every variable, command, media-server route and API
route that exists is listed there, with the words the code uses."""

from __future__ import annotations

import re
from pathlib import Path

from liveclass.cli import build_parser
from liveclass.config import MediaConfig, WebConfig, media_config_from
from liveclass.media.server import create_app

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
PARAM = re.compile(r"\{[^}]*\}")


def _section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end >= 0 else None]


def _documented_routes(section: str) -> set[tuple[str, str]]:
    """`METHOD /path` pairs written in backticks, path parameters made anonymous."""
    pairs = re.findall(r"`(GET|POST|PATCH|DELETE|PUT) (/[^`?\s]*)", section)
    return {(method, PARAM.sub("{}", path)) for method, path in pairs}


def test_every_variable_is_described_with_the_configs_own_words():
    rows = {name: description for name, description in
            re.findall(r"^\| `([A-Z_0-9]+)` \| [^|]* \| (.*) \|$", README, flags=re.M)}
    for model in (WebConfig, MediaConfig):
        for name, field in model.model_fields.items():
            choices = getattr(field.validation_alias, "choices", None) or [name]
            assert any(rows.get(str(env)) == field.description for env in choices), (
                f"README's row for {name} should read: {field.description}")


def test_every_liveclass_command_is_listed():
    block = _section("The `liveclass` command")
    subcommands = next(a for a in build_parser()._actions if a.dest == "command").choices
    assert subcommands
    missing = [name for name in subcommands if f"liveclass {name}" not in block]
    assert not missing, f"README's command list misses: {missing}"


def test_every_media_server_route_is_listed():
    app = create_app(media_config_from({"DEBUG": "1", "MEDIA_RECORDING_ENABLED": "0"}))
    served = {(method, PARAM.sub("{}", route.path))
              for route in app.routes for method in (route.methods or ()) if method not in ("HEAD", "OPTIONS")}
    assert served
    missing = served - _documented_routes(_section("The media server"))
    assert not missing, f"README's media-server table misses: {sorted(missing)}"


def test_every_api_route_is_listed():
    from liveclass.api.routes import api

    served = {(method.upper(), PARAM.sub("{}", path))
              for path, operations in api.get_openapi_schema()["paths"].items() for method in operations}
    assert served
    missing = served - _documented_routes(_section("API"))
    assert not missing, f"README's API table misses: {sorted(missing)}"
