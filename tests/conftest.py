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
    import shutil
    import socket
    import subprocess
    import tempfile

    bindir = Path("/usr/lib/postgresql/15/bin")
    if not (bindir / "initdb").exists():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL 15 is not installed (apt-get install postgresql-15)")
        pytest.skip("PostgreSQL 15 is not installed")
    base = Path(tempfile.mkdtemp(prefix="charter-pg-", dir="/tmp"))
    base.chmod(0o755)
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(base, "postgres", "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = base / "data"
    subprocess.run(
        [*as_postgres, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *as_postgres,
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-w",
            "-l",
            str(base / "log"),
            "-o",
            f"-p {port} -k {base} -c listen_addresses='' -c fsync=on",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://postgres@/postgres?host={base}&port={port}"
    finally:
        subprocess.run(
            [*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"], capture_output=True
        )
        shutil.rmtree(base, ignore_errors=True)
