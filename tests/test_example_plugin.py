"""A separately installed plugin package (tests/example_plugin) is discovered and used end to end.

`python3 tasks.py test` installs it; nothing in `engine/` names it.
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from engine import Engine
from engine.plugins import build_registry

POLICY = """\
charter: 1
kind: tiering
id: engagement-watch
facts:
  purchases_12m: {type: integer, min: 0, required: true}
  last_purchase_at: {type: timestamp, required: true}
scores:
  engagement: {scorer: engagement, args: {damping: 1.0}}
outputs:
  engaged: {type: boolean}
tables:
  - id: engaged
    hit: first
    output: engaged
    default: false
    rules:
      - {id: active, when: scores.engagement >= 4.0, then: true, message: buys often and recently}
"""


def test_installed_through_the_entry_point_group() -> None:
    names = {ep.name for ep in importlib.metadata.entry_points(group="charter")}
    assert "example" in names, "install it: python3 tasks.py test (or pip install -e tests/example_plugin)"
    registry = build_registry()
    assert registry.scorers["engagement"].plugin == "example"
    assert registry.detectors["wechat_id"].func("wang_fang_88") is True
    assert registry.detectors["wechat_id"].func("12345678") is False


def test_a_policy_uses_its_scorer(write_policy: Callable[[str], Path], now: datetime) -> None:
    eng = Engine(write_policy(POLICY))
    busy = eng.evaluate(
        "tiering", {"id": "a", "purchases_12m": 12, "last_purchase_at": "2025-06-20T00:00:00Z"}, now=now
    )
    quiet = eng.evaluate(
        "tiering", {"id": "b", "purchases_12m": 12, "last_purchase_at": "2024-06-20T00:00:00Z"}, now=now
    )
    assert busy.outputs["engaged"] is True and busy.fired_ids == ("active",)
    assert quiet.outputs["engaged"] is False and quiet.scores["engagement"] < 4.0


def test_listed_by_charter_plugins() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "engine.cli", "plugins", "--format", "json"], capture_output=True, text=True, timeout=60
    )
    listed = {p["plugin"]: p for p in json.loads(r.stdout)["plugins"]}
    assert listed["example"] == {
        "plugin": "example",
        "scorers": ["engagement"],
        "detectors": ["wechat_id"],
        "functions": ["initials"],
        "event_backends": [],
        "domains": [],
    }


FUNCTION_POLICY = """\
charter: 1
kind: tiering
id: initials
facts:
  name: {type: string, required: true}
outputs:
  short: {type: boolean}
tables:
  - id: short
    hit: first
    output: short
    default: false
    rules:
      - {id: wf, when: customer.name.initials() == "WF", then: true}
"""


def test_a_policy_calls_its_expression_function(write_policy: Callable[[str], Path], now: datetime) -> None:
    eng = Engine(write_policy(FUNCTION_POLICY))
    assert eng.evaluate("tiering", {"id": "a", "name": "Wang Fang"}, now=now).outputs["short"] is True
    assert eng.evaluate("tiering", {"id": "b", "name": "Li Na"}, now=now).outputs["short"] is False


def test_a_wrong_call_fails_validation_at_its_line(write_policy: Callable[[str], Path]) -> None:
    import pytest

    from engine import PolicyErrors

    bad = FUNCTION_POLICY.replace("customer.name.initials()", "customer.name.initials(3)")
    with pytest.raises(PolicyErrors) as info:
        Engine(write_policy(bad))
    err = info.value.errors[0]
    assert err.code == "E127" and err.location.line == 14
    assert "`customer.name.initials` does not take (int)" in err.message


CLASSIFY = """\
charter: 1
kind: classification
id: im-accounts
classes:
  - {id: basic, handling: {encrypt_at_rest: false, mask: none, export: true}}
  - {id: contact, handling: {encrypt_at_rest: false, mask: full, export: false}}
rules:
  - {id: names, class: basic, fields: [name]}
  - {id: wechat, class: contact, detector: wechat_id, message: a WeChat account}
"""


def test_its_detector_classifies_fields_in_a_policy(write_policy: Callable[..., Path], now: datetime) -> None:
    eng = Engine(write_policy(CLASSIFY, "classification.yaml"))
    d = eng.evaluate("classification", {"name": "Li", "im": "wxid_li2025", "code": "12345678"}, now=now)
    assert d.outputs["fields"] == {
        "name": {"class": "basic", "rule": "names"},
        "im": {"class": "contact", "rule": "wechat"},
    }
    assert d.outputs["unclassified"] == ["code"]


def test_without_it_the_detector_is_a_located_policy_error(write_policy: Callable[..., Path]) -> None:
    registry = build_registry()
    kept = {k: v for k, v in registry.detectors.items() if k != "wechat_id"}
    from dataclasses import replace

    from engine.errors import PolicyErrors

    with pytest.raises(PolicyErrors) as info:
        Engine(write_policy(CLASSIFY, "classification.yaml"), registry=replace(registry, detectors=kept))
    err = info.value.errors[0]
    assert (err.code, err.location.line, err.message) == ("P176", 9, "no plugin provides the detector `wechat_id`")
