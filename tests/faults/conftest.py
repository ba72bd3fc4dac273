"""Fault tests: each kills or restarts a real server (its own processes, its own
PostgreSQL) mid-test. Everything in this directory is marked `faults`; the Makefile runs it
once, in the SQLite pass."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.faults)
