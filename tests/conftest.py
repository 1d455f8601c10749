"""Shared fixtures: the shipped policies, the example customers, a fixed `now`."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"
EXAMPLES = ROOT / "examples" / "customers.jsonl"
NOW = datetime(2025, 6, 30, tzinfo=UTC)

# the command line's default key directory (engine.keyhome): the session's own, never the
# user's; subprocesses inherit it
os.environ["CHARTER_HOME"] = tempfile.mkdtemp(prefix="charter-home-")

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


@pytest.fixture
def fresh_pg(postgres_url: str) -> Iterator[str]:
    """A new, empty database on the session's throwaway PostgreSQL server, dropped afterwards."""
    import uuid

    import sqlalchemy as sa

    name = "t_" + uuid.uuid4().hex[:12]
    admin = sa.create_engine(
        postgres_url.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    yield postgres_url.replace("/postgres?", f"/{name}?")
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE {name} WITH (FORCE)"))
    admin.dispose()


@contextlib.contextmanager
def serving_with_tokens(
    tmp: Path, scopes: dict[str, list[str]]
) -> Iterator[tuple[str, dict[str, str], subprocess.Popen[str]]]:
    """A real `charter serve` on a loopback port (the shipped policies, a SQLite log, the
    example population) with a token of each of ``scopes``: (its URL, token by name, process).
    Its stderr is drained so the pipe never fills; it is stopped on the way out."""
    from engine.serve.auth import digest, new_token

    secrets = {name: new_token() for name in scopes}
    entries = [{"name": n, "scopes": s, "sha256": digest(secrets[n])} for n, s in scopes.items()]
    (tmp / "tokens.json").write_text(json.dumps({"tokens": entries}), encoding="utf-8")
    cmd = [sys.executable, "-m", "engine.cli", "serve", "--port", "0", "--policies", str(POLICIES)]
    cmd += ["--store", f"sqlite:///{tmp / 'log.db'}", "--key-file", str(tmp / "k"), "--watch-interval", "0"]
    cmd += ["--population", str(EXAMPLES), "--tokens", str(tmp / "tokens.json")]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, cwd=tmp, env=env)
    drain: threading.Thread | None = None
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        m = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        assert m, line + proc.stderr.read()
        drain = threading.Thread(target=proc.stderr.read, daemon=True)  # keep the pipe from filling
        drain.start()
        yield m.group(1), secrets, proc
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        if drain is not None:
            drain.join(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()
