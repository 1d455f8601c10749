#!/usr/bin/env python3
"""Set up and run Charter with nothing but Python 3.11 or 3.12 on the machine.

    python3 tasks.py demo    # evaluate the shipped policies of all five domains over the example data
    python3 tasks.py test    # run the whole test suite (extra arguments go to pytest)
    python3 tasks.py bench   # run the benchmarks

Each command creates ``.venv`` on first use and (re)installs Charter into it whenever
``pyproject.toml`` changes. Standard library only.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")
NOW = "2025-06-30T00:00:00Z"  # the example customers' "as of" date


def setup() -> None:
    if sys.version_info[:2] not in ((3, 11), (3, 12)):
        sys.exit(f"Charter supports Python 3.11 and 3.12; this is {sys.version.split()[0]}")
    if not PY.exists():
        print("creating .venv ...", file=sys.stderr)
        venv.EnvBuilder(with_pip=True).create(VENV)
    stamp = VENV / ".charter-installed"
    # third-party packages the tests use: a plugin (scorer, detector, function) and a sixth domain
    examples = [ROOT / "tests" / "example_plugin", ROOT / "tests" / "example_domain"]
    want = hashlib.sha256(
        b"".join(p.read_bytes() for p in [ROOT / "pyproject.toml", *(e / "pyproject.toml" for e in examples)])
    ).hexdigest()
    if not stamp.exists() or stamp.read_text() != want:
        print("installing Charter and its dependencies into .venv ...", file=sys.stderr)
        pip = [str(PY), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, "--upgrade", "pip"], check=True)
        subprocess.run([*pip, "-e", f"{ROOT}[test,bench,scale]"], check=True, cwd=ROOT)
        for example in examples:
            subprocess.run([*pip, "--no-deps", "-e", str(example)], check=True, cwd=ROOT)
        stamp.write_text(want)


def run(*cmd: str, out: Path | None = None) -> int:
    if out is None:
        return subprocess.call(list(cmd), cwd=ROOT)
    out.parent.mkdir(exist_ok=True)
    with out.open("w", encoding="utf-8") as f:
        return subprocess.call(list(cmd), cwd=ROOT, stdout=f)


# the other domains' example requests, and what each needs besides them
OTHER_DOMAINS = (
    ("classification", "examples/customers.jsonl", ()),
    ("access", "examples/requests/access.jsonl", ()),
    ("retention", "examples/requests/retention.jsonl", ()),
    ("escalation", "examples/requests/escalation.jsonl", ("--population", "examples/customers.jsonl")),
)


def main(argv: list[str]) -> int:
    task = argv[0] if argv else "help"
    if task not in ("demo", "test", "bench"):
        print(__doc__)
        return 2
    setup()
    charter = str(BIN / "charter")
    if task == "demo":
        rc = run(charter, "validate", "policies")
        if rc:
            return rc
        rc = run(charter, "evaluate", "--domain", "tiering", "--facts", "examples/customers.jsonl", "--now", NOW)
        if rc:
            return rc
        # the four other domains: decisions as JSON Lines in demo-out/, a summary line each
        for domain, facts, extra in OTHER_DOMAINS:
            out = ROOT / "demo-out" / f"{domain}.jsonl"
            rc = run(charter, "evaluate", "--domain", domain, "--facts", facts, "--now", NOW, *extra, out=out)
            if rc:
                return rc
        # one customer's decision in words, with the trace of every rule
        rc = run(
            charter,
            "explain",
            "--domain",
            "tiering",
            "--facts",
            "examples/customers.jsonl",
            "--now",
            NOW,
            "--customer",
            "C000001",
        )
        if rc:
            return rc
        # the auditor's side: every decision above was logged to charter.db (its keys in the user's
        # key directory, ~/.local/share/charter, never beside the data);
        # check the hash chain and the signed checkpoints of its head (charter.signing.key), then
        # reproduce that customer's logged decisions from the log alone
        rc = run(charter, "log", "verify", "--checkpoints", "charter.checkpoints.jsonl")
        return rc or run(charter, "replay", "--customer", "C000001")
    if task == "test":
        return run(str(PY), "-m", "pytest", *argv[1:])
    rc = run(str(PY), "bench/bench_tiering.py", *argv[1:])
    for script in ("bench_domains.py", "bench_log.py", "bench_peers.py", "bench_scale.py"):
        rc = rc or run(str(PY), f"bench/{script}")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
