"""A throwaway PostgreSQL server for tests and benchmarks: started in a temp dir, then removed.

::

    with throwaway_postgres() as url:   # postgresql://postgres@/postgres?host=...&port=...
        ...

Runs the server as the ``postgres`` user when called as root, listening only on a Unix
socket in its own directory. Raises ``FileNotFoundError`` when PostgreSQL 15 is not
installed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

BINDIR = Path("/usr/lib/postgresql/15/bin")
FAST_RESTART = ("-m", "fast", "restart")


def installed() -> bool:
    return (BINDIR / "initdb").exists()


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    if not installed():
        raise FileNotFoundError(f"PostgreSQL 15 is not installed ({BINDIR})")
    base = Path(tempfile.mkdtemp(prefix="charter-pg-", dir="/tmp"))
    base.chmod(0o755)
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(base, "postgres", "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = base / "data"
    ctl = [*as_postgres, str(BINDIR / "pg_ctl"), "-D", str(data)]
    try:
        subprocess.run(
            [*as_postgres, str(BINDIR / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
            check=True,
            capture_output=True,
        )
        options = f"-p {port} -k {base} -c listen_addresses='' -c fsync=on"
        subprocess.run([*ctl, "-w", "-l", str(base / "log"), "-o", options, "start"], check=True, capture_output=True)
        yield f"postgresql://postgres@/postgres?host={base}&port={port}"
    finally:
        subprocess.run([*ctl, "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def restart(url: str) -> None:
    """Restart (fast: open sessions are cut) the throwaway server behind ``url``."""
    from urllib.parse import parse_qs, urlparse

    base = Path(parse_qs(urlparse(url).query)["host"][0])
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run(
        [*as_postgres, str(BINDIR / "pg_ctl"), "-D", str(base / "data"), "-l", str(base / "log"), "-w", *FAST_RESTART],
        check=True,
        capture_output=True,
    )
