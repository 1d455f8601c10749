"""A decision-log writer process for the crash and multi-writer tests.

    python tests/audit_writer.py STORE_URL COUNT BATCH [OFFSET]

On a store error it prints `ERROR code message` on stderr and exits 3, or, with
CHARTER_WRITER_RETRY=1, waits a moment and goes on with the decisions not yet handed back.

Logs tiering decisions for the example customers (from OFFSET, wrapping round) with the
shipped policies, printing each record id on its own line as soon as the engine hands the
decision back (which it does only once the record is durable).
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import Engine  # noqa: E402
from engine.audit import DecisionLog, Protector  # noqa: E402
from engine.plugins import open_store  # noqa: E402
from engine.storage import StorageError  # noqa: E402

KEY = bytes(range(32))
NOW = datetime(2025, 6, 30, tzinfo=UTC)


def main() -> None:
    url, count, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    offset = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    with open(ROOT / "examples" / "customers.jsonl", encoding="utf-8") as f:
        customers = [json.loads(line) for line in f]
    store = open_store(url)
    engine = Engine(ROOT / "policies", log=DecisionLog(store, Protector(store, KEY)), log_batch=batch)
    engine.use_snapshot(engine.build_snapshot(customers, now=NOW))
    retry = os.environ.get("CHARTER_WRITER_RETRY") == "1"
    done = 0
    while done < count:
        stream = (customers[(offset + i) % len(customers)] for i in range(done, count))
        try:
            for decision in engine.evaluate_batch("tiering", stream, now=NOW):
                print(decision.record_id, flush=True)  # type: ignore[union-attr]
                done += 1
        except StorageError as exc:  # the store failed: nothing of the batch in flight was handed back
            print(f"ERROR {exc.code} {exc.message}", file=sys.stderr, flush=True)
            if not retry:
                sys.exit(3)
            time.sleep(0.2)


if __name__ == "__main__":
    main()
