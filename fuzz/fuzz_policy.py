"""A coverage-guided fuzz target for the loader, validator and expression compiler (atheris).

CI runs the property-based fuzz tests (``tests/test_fuzz.py``, hypothesis, fixed budget).
For long runs, this target feeds arbitrary bytes to the whole policy pipeline under
libFuzzer via atheris::

    .venv/bin/pip install atheris          # needs a clang toolchain where no wheel exists
    .venv/bin/python fuzz/fuzz_policy.py -max_total_time=3600 -rss_limit_mb=2048 fuzz/corpus

Seed ``fuzz/corpus`` with the shipped policies (``cp policies/*.yaml fuzz/corpus/``). The
contract checked: every input gives a loaded policy set or ``PolicyErrors`` whose errors are
all located; anything else — another exception, a hang (``-timeout``), unbounded memory
(``-rss_limit_mb``) — is a crash libFuzzer reports with the input that caused it.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.core.bundle import build_bundle  # noqa: E402
from engine.errors import PolicyErrors  # noqa: E402
from engine.plugins import build_registry  # noqa: E402

REGISTRY = build_registry()
WORKDIR = Path(tempfile.mkdtemp(prefix="charter-fuzz-"))


def check_one(data: bytes) -> None:
    """Load ``data`` as a policy file; raise AssertionError if the contract is broken."""
    name = ("tiering", "classification", "access", "retention", "escalation")[data[0] % 5] if data else "tiering"
    path = WORKDIR / f"{name}.yaml"
    path.write_bytes(data[1:])
    try:
        build_bundle([path], REGISTRY)
    except PolicyErrors as exc:
        for err in exc.errors:
            assert err.location.file == str(path) and err.location.line >= 1, str(err)


def main() -> None:
    import atheris  # type: ignore[import-not-found]  # optional: only for long fuzzing runs

    atheris.Setup(sys.argv, check_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
