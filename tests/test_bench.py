"""The benchmark's hand-written tiering function decides exactly as the shipped policy does."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

from conftest import POLICIES, ROOT

from engine import Engine

sys.path.insert(0, str(ROOT / "bench"))
from handwritten import tier


def test_handwritten_agrees_with_the_policy(customers: list[dict[str, Any]], now: datetime) -> None:
    eng = Engine(POLICIES)
    eng.use_snapshot(eng.build_snapshot(customers, now=now))
    snap = eng.snapshot
    assert snap is not None
    cuts = (snap.scores["value"].cuts[10.0], snap.scores["value"].cuts[50.0], snap.scores["value"].cuts[80.0])
    for c in customers:
        assert tier(c, now, cuts) == eng.evaluate("tiering", c, now=now).outputs, c["id"]
