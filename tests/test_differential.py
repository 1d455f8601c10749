"""The fast paths and the explaining (reference) path decide the same, on every shipped example
and on thousands of generated requests per domain.

The fast paths are the ones a host meets: classification's outcome cache and detector screens,
access's replayed static decisions, the compiled request checks; ``explain=True`` takes the
path that runs every rule and every detector and records each comparison.
"""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from charter_plugins import detectors
from conftest import EXAMPLES, POLICIES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_domain_fuzz import first, json_values, paths

from engine import Decision, Engine
from engine.errors import FactErrors

NOW = datetime(2025, 6, 30, tzinfo=UTC)
REQUESTS = EXAMPLES.parent / "requests"
DOMAINS = ["tiering", "classification", "access", "retention", "escalation"]


@pytest.fixture(scope="module")
def engine() -> Engine:
    eng = Engine(POLICIES)
    with EXAMPLES.open(encoding="utf-8") as f:
        eng.use_snapshot(eng.build_snapshot((json.loads(line) for line in f), now=NOW))
    return eng


def examples(domain: str) -> list[dict[str, Any]]:
    path = EXAMPLES if domain in ("tiering", "classification") else REQUESTS / f"{domain}.jsonl"
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def verdict(decision: Decision) -> Any:
    """What a decision says, without its trace (only the explaining path keeps one)."""
    doc = decision.to_dict()
    doc.pop("trace", None)
    doc["upstream"] = [verdict(u) for u in decision.upstream]
    return json.loads(json.dumps(doc, sort_keys=True, default=str))


def outcome(engine: Engine, domain: str, request: Any, explain: bool) -> Any:
    try:
        return verdict(engine.evaluate(domain, request, now=NOW, explain=explain))
    except FactErrors as exc:
        return ("FactErrors", sorted((e.field, e.code) for e in exc.errors))


@pytest.mark.parametrize("domain", DOMAINS)
def test_every_example_decides_the_same_explained_or_not(engine: Engine, domain: str) -> None:
    requests = examples(domain)[:400]
    assert requests
    fast = [outcome(engine, domain, r, False) for r in requests]
    fast_again = [outcome(engine, domain, r, False) for r in requests]  # the caches now hit
    explained = [outcome(engine, domain, r, True) for r in requests]
    assert fast == explained
    assert fast_again == fast
    assert any(o for o in fast if isinstance(o, dict) and o["fired"])  # the examples decide something


@pytest.mark.parametrize("domain", DOMAINS)
@settings(
    max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_generated_requests_decide_the_same_explained_or_not(engine: Engine, domain: str, data: st.DataObject) -> None:
    doc = copy.deepcopy(first("classification" if domain == "tiering" else domain))
    for _ in range(data.draw(st.integers(0, 3))):
        where = data.draw(st.sampled_from(paths(doc)[1:]))
        target = doc
        for key in where[:-1]:
            target = target[key]
        if data.draw(st.booleans()) and isinstance(target, dict):
            del target[where[-1]]
        else:
            target[where[-1]] = data.draw(json_values)
    fast = outcome(engine, domain, doc, False)
    assert outcome(engine, domain, doc, False) == fast  # a cached answer is the first answer
    assert outcome(engine, domain, doc, True) == fast


def test_a_replayed_decision_shares_no_container_with_the_next(engine: Engine) -> None:
    request = examples("access")[0]
    one = engine.evaluate("access", request, now=NOW)
    expected = verdict(one)
    for value in one.outputs.values():  # a host that edits what it was given
        if isinstance(value, dict):
            value["tampered"] = True
        elif isinstance(value, list):
            value.append("tampered")
    assert verdict(engine.evaluate("access", request, now=NOW)) == expected


# --- the detectors' fast forms against their definitions ------------------------------------

EXOTIC = "\u212a\u017f\u0130\u0131Àéßﬁ\uff24\uff29\uff21\uff22\uff25\uff34\uff25\uff33糖尿病癌 \n\t"
texts = st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from(list(EXOTIC)), max_size=40) | st.builds(
    lambda a, t, b: a + t + b,
    st.text(max_size=5),
    st.sampled_from([*detectors.MEDICAL_TERMS, "DIABETES", "Hiv", "ha\u017fthma", "\u0130llness", "HİV"]),
    st.text(max_size=5),
)


@settings(max_examples=3000, deadline=None, derandomize=True)
@given(text=texts)
def test_medical_terms_is_its_case_insensitive_search(text: str) -> None:
    assert detectors.medical_terms(text) == (detectors._MEDICAL.search(text) is not None)


def test_medical_terms_folds_every_code_point_as_ignorecase_does() -> None:
    """The fast form lowers the text (after ``_FOLD``) and searches literally; ``_MEDICAL``
    searches with IGNORECASE. Per character they agree when, for every code point, its folded
    lowercase is a character of a term exactly when IGNORECASE matches it to that character."""
    chars = sorted({c for t in detectors.MEDICAL_TERMS for c in t.lower()})
    any_char = re.compile("[" + re.escape("".join(chars)) + "]", re.IGNORECASE)
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        ch = chr(cp)
        low = ch.translate(detectors._FOLD).lower()
        if any_char.fullmatch(ch) is None:
            assert low not in chars, hex(cp)
        else:
            assert low in chars and re.fullmatch(re.escape(low), ch, re.IGNORECASE), hex(cp)


def _card(prefix: str) -> str:
    digits = [int(c) for c in prefix]
    total = sum(d if i % 2 else (d * 2 - 9 if d > 4 else d * 2) for i, d in enumerate(reversed(digits)))
    return prefix + str(-total % 10)


accepted = {
    "national_id": st.sampled_from(["11010519491231002X", "110105194912310021", "440524188001010014"]),
    "bank_card": st.builds(_card, st.text("0123456789", min_size=11, max_size=18)).map(
        lambda c: c if len(c) < 16 else f"{c[:4]} {c[4:8]}-{c[8:]}"
    ),
    "phone": st.builds(lambda d: "+86 1" + d, st.text("3456789", min_size=10, max_size=10)),
    "email": st.emails(),
}


@pytest.mark.parametrize("name", sorted(detectors.SCREENS))
@settings(max_examples=400, deadline=None, derandomize=True)
@given(data=st.data())
def test_a_screen_finds_every_text_its_detector_accepts(name: str, data: st.DataObject) -> None:
    detect = getattr(detectors, name)
    screen = re.compile(detectors.SCREENS[name])
    text = data.draw(accepted[name] | texts | st.text("0123456789 -+X", max_size=22))
    if detect(text):
        assert screen.search(text) is not None, text


def test_screens_are_exercised() -> None:
    """The generators above reach the detectors' accepting side."""
    assert detectors.bank_card(_card("411111111111111"))
    assert detectors.national_id("11010519491231002X")
    assert detectors.phone("+86 13912345678")
