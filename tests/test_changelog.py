"""The changelog names the running engine and policy-semantics versions, and every section
with a change that can alter a decision bumped the semantics version."""

from __future__ import annotations

import itertools
import re

from conftest import ROOT

from engine import ENGINE_VERSION, SEMANTICS_VERSION

HEADING = re.compile(r"^## .*?engine (\S+), semantics (\d+)$|^## (\S+) — semantics (\d+)$", re.M)


def sections() -> list[tuple[str, int, str]]:
    """(engine version, semantics version, text) of each section, newest first."""
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    marks = list(HEADING.finditer(text))
    out = []
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        engine, semantics = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        out.append((engine, int(semantics), text[m.end() : end]))
    return out


def test_the_newest_section_is_the_running_version() -> None:
    engine, semantics, _ = sections()[0]
    assert (engine, str(semantics)) == (ENGINE_VERSION, SEMANTICS_VERSION)


def test_a_decision_change_bumps_the_semantics_version() -> None:
    found = sections()
    assert len(found) >= 2
    for (_, newer, text), (_, older, _) in itertools.pairwise(found):
        if "**[decision]**" in text:
            assert newer == older + 1, "a section with a [decision] entry bumps the semantics version by one"
        else:
            assert newer == older, "only a [decision] entry may change the semantics version"
