"""bench/bench_peers.py's peers decide exactly as Charter does, and a difference would be caught.

Only the agreement checks run here, on a subset; nothing is timed.
"""

from __future__ import annotations

import dataclasses
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import NOW, POLICIES, ROOT

pytest.importorskip("casbin", reason="pycasbin is a bench extra: pip install -e '.[bench]'")
pytest.importorskip("zen", reason="zen-engine is a bench extra: pip install -e '.[bench]'")

sys.path.insert(0, str(ROOT / "bench"))
from peers import access, tiering

SEED = 2025


@pytest.fixture(scope="module")
def tiered(customers: list[dict[str, Any]]) -> tiering.Tiering:
    return tiering.setup(POLICIES / "tiering.yaml", customers[:300], NOW)


@pytest.fixture
def access_setup(tmp_path: Path, now: datetime) -> access.Access:
    return access.setup(POLICIES, tmp_path, 0, SEED, now)  # 0: every combination once, nothing more


def test_tiering_engines_agree(tiered: tiering.Tiering, now: datetime) -> None:
    assert tiering.disagreements(tiered, now) == []


def test_tiering_disagreement_is_reported(tiered: tiering.Tiering, now: datetime) -> None:
    wrong = {**tiered.zen_cuts, "p50": tiered.zen_cuts["p80"]}  # zen-engine puts no one in the medium band
    found = tiering.disagreements(tiered, now, zen_cuts=wrong)
    assert found
    assert all("zen-engine" in line for line in found)
    assert any("value_tier is 'medium' by Charter, 'low' by zen-engine" in line for line in found)


def test_access_covers_every_combination(access_setup: access.Access) -> None:
    m = access_setup.model
    seen = {(r.roles, r.cls, r.action, r.purpose) for r in access_setup.requests}
    assert {r.cls for r in access_setup.requests} == set(m.classes)
    assert len(seen) == len(access.subjects(m, SEED)) * len(m.classes) * len(m.actions) * len(m.purposes)
    assert set(m.left_out) >= {"sales-own-customers", "waiver-crm-migration-2026"}


def test_access_engines_agree(access_setup: access.Access, now: datetime) -> None:
    found, allowed = access.disagreements(access_setup, now)
    assert found == []
    assert len(set(allowed.values())) == 1
    assert 0 < allowed["Charter"] < len(access_setup.requests)  # both outcomes occur


def test_access_disagreement_is_reported(access_setup: access.Access, now: datetime) -> None:
    files = access_setup.files
    lines = files.casbin_policy.read_text(encoding="utf-8").splitlines()
    flip = next(i for i, line in enumerate(lines) if line.startswith("p, *, ") and line.endswith(", deny"))
    _, _, cls, action, purpose, _ = lines[flip].split(", ")  # a deny for every role, now an allow
    lines[flip] = lines[flip].removesuffix("deny") + "allow"
    flipped = files.casbin_policy.with_name("flipped.csv")
    flipped.write_text("\n".join(lines) + "\n", encoding="utf-8")
    broken = access.casbin_enforcer(dataclasses.replace(files, casbin_policy=flipped))
    found, _ = access.disagreements(dataclasses.replace(access_setup, casbin={"pycasbin": broken}), now)
    assert len(found) >= len(access.subjects(access_setup.model, SEED))  # at least each subject once
    for line in found:
        assert f" {action} `" in line
        assert f"({cls}) for {purpose}: Charter deny (" in line
        assert line.endswith("pycasbin allow")
