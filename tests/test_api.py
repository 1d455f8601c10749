"""The host API: atomic reload, thread safety, streaming batches, load-time compilation."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import MINIMAL

from engine import Decision, Engine, EvaluationError, FactErrors, PolicyErrors
from engine.core.bundle import load_documents
from engine.core.compile import PASSES, compile_policy
from engine.core.validate import validate
from engine.plugins import build_registry

GOLD = {"id": "c1", "clv": 60000.0, "complaints": 1}


def test_reload_swaps_policies(write_policy: Callable[[str], Path], now: datetime) -> None:
    d = write_policy(MINIMAL)
    eng = Engine(d)
    old = eng.bundle_version
    assert eng.evaluate("tiering", GOLD, now=now).outputs["tier"] == "gold"
    (d / "tiering.yaml").write_text(MINIMAL.replace(">= 50000", ">= 70000"))
    new = eng.reload()
    assert new != old and eng.bundle_version == new
    assert eng.evaluate("tiering", GOLD, now=now).outputs["tier"] == "silver"


def test_bad_reload_keeps_the_old_policies(write_policy: Callable[[str], Path], now: datetime) -> None:
    d = write_policy(MINIMAL)
    eng = Engine(d)
    old = eng.bundle_version
    (d / "tiering.yaml").write_text(MINIMAL.replace("then: gold", "then: gould"))
    with pytest.raises(PolicyErrors):
        eng.reload()
    assert eng.bundle_version == old
    assert eng.evaluate("tiering", GOLD, now=now).outputs["tier"] == "gold"


def test_concurrent_evaluation_never_sees_a_mix(tmp_path: Path, now: datetime) -> None:
    """8 threads decide while the main thread reloads 1,000 times between two bundles and an invalid one.

    The workers pause briefly every 50 decisions so the GIL lets the reloading thread run;
    without it eight busy threads starve it and the test takes minutes, not seconds.
    """
    dirs = {}
    for name, threshold in (("a", "50000"), ("b", "70000")):
        d = tmp_path / name
        d.mkdir()
        (d / "tiering.yaml").write_text(MINIMAL.replace("50000", threshold))
        dirs[name] = d
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "tiering.yaml").write_text(MINIMAL.replace("then: gold", "then: gould"))
    eng = Engine(dirs["a"])
    version_a = eng.bundle_version
    version_b = Engine(dirs["b"]).bundle_version
    expected = {version_a: "gold", version_b: "silver"}
    stop = threading.Event()
    problems: list[str] = []
    seen: set[str] = set()

    def worker() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            if n % 50 == 0:
                time.sleep(0.001)
            try:
                d = eng.evaluate("tiering", GOLD, now=now)
            except Exception as exc:
                problems.append(repr(exc))
                return
            seen.add(d.bundle_version)
            if expected.get(d.bundle_version) != d.outputs["tier"]:
                problems.append(f"{d.bundle_version} decided {d.outputs['tier']}")

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    failed = 0
    for i in range(1_000):
        target = [dirs["a"], dirs["b"], bad][i % 3]
        try:
            eng.reload(target)
        except PolicyErrors:
            failed += 1
    stop.set()
    for t in threads:
        t.join()
    assert failed == 333 and not problems, problems[:5]
    assert seen == set(expected)  # both bundles served decisions while they were swapped


def test_batch_streams_one_in_one_out(write_policy: Callable[[str], Path], now: datetime) -> None:
    eng = Engine(write_policy(MINIMAL))
    pulled = []

    def source() -> Iterator[dict[str, Any]]:
        for i in range(5):
            pulled.append(i)
            yield {"id": f"c{i}", "clv": 10000.0 * i}

    results = eng.evaluate_batch("tiering", source(), now=now)
    first = next(results)
    assert isinstance(first, Decision) and pulled == [0]
    rest = list(results)
    assert len(rest) == 4 and pulled == [0, 1, 2, 3, 4]


def test_batch_yields_fact_errors_in_place(write_policy: Callable[[str], Path], now: datetime) -> None:
    eng = Engine(write_policy(MINIMAL))
    out = list(eng.evaluate_batch("tiering", [GOLD, {"id": "x", "clv": -5}, GOLD], now=now))
    assert [type(r).__name__ for r in out] == ["Decision", "FactErrors", "Decision"]
    with pytest.raises(FactErrors):
        list(eng.evaluate_batch("tiering", [{"id": "x", "clv": -5}], now=now, errors="raise"))


def test_unknown_domain_suggests(write_policy: Callable[[str], Path], now: datetime) -> None:
    eng = Engine(write_policy(MINIMAL))
    with pytest.raises(EvaluationError) as info:
        eng.evaluate("tierng", GOLD, now=now)
    assert info.value.hint == "did you mean `tiering`?"


def test_compile_passes_are_named_and_can_stop_early(write_policy: Callable[[str], Path]) -> None:
    registry = build_registry()
    doc = load_documents([write_policy(MINIMAL)])[0]
    policy = validate(doc, registry)
    assert [name for name, _ in PASSES] == ["facts", "scores", "steps", "digest", "domain"]
    partial = compile_policy(policy, registry, stop_after="facts")
    assert partial.checker is not None and partial.steps == []
    full = compile_policy(policy, registry)
    assert [s.decl.id for s in full.steps] == ["tiering"]


def test_non_mapping_facts_are_a_fact_error(write_policy: Callable[[str], Path], now: datetime) -> None:
    eng = Engine(write_policy(MINIMAL))
    for bad in ([1, 2], "text", None, 3):
        with pytest.raises(FactErrors, match="JSON object"):
            eng.evaluate("tiering", bad, now=now)  # type: ignore[arg-type]
