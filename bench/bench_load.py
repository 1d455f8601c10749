"""Cost of `charter validate` per megabyte of policy file: load, validate, compile and lint.

    .venv/bin/python bench/bench_load.py [--repeat 3] [--sizes 0.25,0.5,1,2,5]

For each size, the shipped policies with `access.yaml` grown to that many megabytes by
generated rules (each with a role, class, action, purpose and a condition), validated in a
fresh process (so the peak memory is that run's own). A file past the loader's value limit
(200,000 values, about 2.3 MB of such rules) is refused: its row is the time to refuse it.
Medians over ``--repeat`` runs; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

RULE = """  - id: gen-{i}
    effect: allow
    roles: [agent]
    classes: [basic]
    actions: [read]
    purposes: [service]
    when: subject.department == "d{i}"
    message: generated rule {i}
"""

CHILD = """
import argparse, json, resource, sys, time
t = time.perf_counter()
from engine.cli import cmd_validate
import contextlib, io
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    rc = cmd_validate(argparse.Namespace(paths=[sys.argv[1]], format="text"))
print(json.dumps({"rc": rc, "s": time.perf_counter() - t,
                  "mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def grow(directory: Path, megabytes: float) -> int:
    """The shipped policies in ``directory``, access.yaml grown to ``megabytes``; its size in bytes."""
    for f in (ROOT / "policies").glob("*.yaml"):
        shutil.copy(f, directory / f.name)
    head, rules = (ROOT / "policies" / "access.yaml").read_text(encoding="utf-8").split("rules:\n", 1)
    parts, size, i = [head, "rules:\n"], len(head), 0
    while size < megabytes * 1_000_000:
        rule = RULE.format(i=i)
        parts.append(rule)
        size += len(rule.encode())
        i += 1
    parts.append(rules)
    text = "".join(parts)
    (directory / "access.yaml").write_text(text, encoding="utf-8")
    return len(text.encode())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sizes", default="0.25,0.5,1,2,5", help="megabytes, comma-separated")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    out: dict[str, dict[str, float | str]] = {}
    for megabytes in (float(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="charter-bench-load-") as tmp:
            size = grow(Path(tmp), megabytes)
            runs = [
                json.loads(
                    subprocess.run(
                        [sys.executable, "-c", CHILD, tmp], capture_output=True, text=True, check=True, cwd=ROOT
                    ).stdout
                )
                for _ in range(args.repeat)
            ]
        seconds = statistics.median(r["s"] for r in runs)
        mb = size / 1_000_000
        verdict = "accepted" if runs[0]["rc"] == 0 else "refused"
        row = {
            "bytes": size,
            "median_s": seconds,
            "s_per_mb": seconds / mb,
            "peak_rss_mb": statistics.median(r["mb"] for r in runs),
            "verdict": verdict,
        }
        out[f"{megabytes:g} MB"] = row
        print(
            f"{mb:5.2f} MB  {verdict:8}  {seconds:6.2f} s  ({seconds / mb:5.2f} s per MB, "
            f"peak {row['peak_rss_mb']:.0f} MB; runs {min(r['s'] for r in runs):.2f}–{max(r['s'] for r in runs):.2f})"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
