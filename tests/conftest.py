"""Shared fixtures: the shipped policies, the example customers, a fixed `now`."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"
EXAMPLES = ROOT / "examples" / "customers.jsonl"
NOW = datetime(2025, 6, 30, tzinfo=UTC)

MINIMAL = """\
charter: 1
kind: tiering
id: t
facts:
  clv: {type: number, min: 0, required: true}
  complaints: {type: integer, default: 0}
outputs:
  tier: {type: string, values: [gold, silver]}
tables:
  - id: tiering
    hit: first
    output: tier
    rules:
      - id: gold
        when: customer.clv >= 50000 && customer.complaints < 3
        then: gold
      - id: silver
        when: "true"
        then: silver
"""


@pytest.fixture(scope="session")
def customers() -> list[dict[str, Any]]:
    with EXAMPLES.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture
def now() -> datetime:
    return NOW


@pytest.fixture
def write_policy(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write policy text into a fresh directory; returns the directory."""

    def write(text: str, name: str = "tiering.yaml") -> Path:
        d = tmp_path / "policies"
        d.mkdir(exist_ok=True)
        (d / name).write_text(text, encoding="utf-8")
        return d

    return write


@pytest.fixture
def shipped_text() -> str:
    return (POLICIES / "tiering.yaml").read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL 15 server, run as the `postgres` user on a Unix socket in a temp dir."""
    import os

    from engine.testing.postgres import installed, throwaway_postgres

    if not installed():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL 15 is not installed (apt-get install postgresql-15)")
        pytest.skip("PostgreSQL 15 is not installed")
    with throwaway_postgres() as url:
        yield url
