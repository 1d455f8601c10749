"""`charter fmt`: one canonical form, every comment kept, meaning never changed (docs/editor.md)."""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import MINIMAL, POLICIES, ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import Engine
from engine.cli import main
from engine.core.load import load_text
from engine.errors import PolicyErrors
from engine.plugins import BUILTIN_PLUGINS, build_registry
from engine.workbench.fmt import check, format_text

SHIPPED = sorted(POLICIES.glob("*.yaml"))
REQUESTS = ROOT / "examples" / "requests"


def scramble(text: str) -> str:
    """A shipped policy as a careless editor might leave it: top-level sections in reverse order,
    the keys of every one-line-per-key list item reversed, and 4-space indentation. Comments and
    blank lines go with the lines they precede; the header stays on top."""
    lines = text.splitlines()
    cut = next(i for i, line in enumerate(lines) if not line.startswith("#"))
    blocks: list[list[str]] = []
    pending: list[str] = []  # blank lines and column-0 comments: they belong to the next key
    for line in lines[cut:]:
        if line and not line[0].isspace() and not line.startswith("#"):
            blocks.append([*pending, line])
            pending = []
        elif not line.strip() or line.startswith("#"):
            pending.append(line)
        else:
            blocks[-1] += [*pending, line]
            pending = []
    blocks[-1] += pending
    body = [line for block in reversed(blocks) for line in _reverse_items(block)]
    return "\n".join(lines[:cut] + [_wider(line) for line in body]) + "\n"


def _wider(line: str) -> str:
    """Twice the indentation; a list item's content moves with it (`  - id` becomes `    -   id`)."""
    return re.sub(r"^( *)(- )?", lambda m: m.group(1) * 2 + ("-   " if m.group(2) else ""), line)


def _reverse_items(block: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(block):
        head = re.match(r"( *)- ([a-z_]+:.*)", block[i])
        if head is None:
            out.append(block[i])
            i += 1
            continue
        pad = head.group(1) + "  "
        j = i + 1
        while j < len(block) and re.match(rf"{pad}[a-z_]+:", block[j]):
            j += 1
        keys = [head.group(2), *(line[len(pad) :] for line in block[i + 1 : j])]
        deeper = j < len(block) and block[j].startswith(pad + " ")
        if deeper or any(k.rstrip().endswith((":", "|", ">", ">-")) for k in keys):
            keys.reverse()  # not a flat item: put it back as it was
        out += [head.group(1) + "- " + keys[-1], *(pad + k for k in reversed(keys[:-1]))]
        i = j
    return out


SCRAMBLED = """\
# yaml-language-server: $schema=../engine/schemas/tiering.schema.json
#
# Gold and silver customers (keys out of order, 4-space indentation).
tables:   # decided in this order
    # the only table
    -   rules:
            # gold first: the rules are tried in order
            -   then: gold   # the best tier
                # over 50,000 CNY without complaints
                when: customer.clv >= 50000 && customer.complaints < 3
                id: gold
            -   message: everyone else
                id: silver    # the fallback
                then: silver
                when: "true"
        output: tier
        id: tiering     # one table, one output
        hit: first
id: gold-silver   # lowercase words joined by `-`

# what the policy reads about a customer
facts:
    # lifetime value, CNY
    clv: {required: true, min: 0, type: number}
    complaints: {default: 0, type: integer}   # in the last 90 days
outputs:
    tier: {values: [gold, silver], type: string}
    segments: {type: list, values: ["a", "b",   # the first two
                                    # the last one
        "c"]}
kind: tiering
charter: 1   # the file format version
# end of policy
"""

CANONICAL = """\
# yaml-language-server: $schema=../engine/schemas/tiering.schema.json
#
# Gold and silver customers (keys out of order, 4-space indentation).
charter: 1   # the file format version
kind: tiering
id: gold-silver   # lowercase words joined by `-`

# what the policy reads about a customer
facts:
  # lifetime value, CNY
  clv: {type: number, min: 0, required: true}
  complaints: {type: integer, default: 0}   # in the last 90 days
outputs:
  tier: {type: string, values: [gold, silver]}
  segments: {type: list, values: ["a", "b",   # the first two
                                  # the last one
                                  "c"]}
tables:   # decided in this order
  # the only table
  - id: tiering     # one table, one output
    hit: first
    output: tier
    rules:
      # gold first: the rules are tried in order
      - id: gold
        # over 50,000 CNY without complaints
        when: customer.clv >= 50000 && customer.complaints < 3
        then: gold   # the best tier
      - id: silver    # the fallback
        when: "true"
        then: silver
        message: everyone else
# end of policy
"""

ODD = {  # inputs off the shipped style: each must format, keep its meaning and be a fixed point
    "crlf, no final newline": "kind: tiering\r\ncharter: 1   # version\r\nid: x",
    "block scalar with a comment": "charter: 1\nscores:\n  churn:\n    description: d\n    expr: >-   # folded\n"
    "      a\n      + b\n\n    # next\n  value: {scorer: clv}\nkind: tiering\n",
    "keep chomping": "charter: 1\nkind: tiering\ndescription: |+\n  kept\n\n# the id\nid: x\n",
    "modeline not first": "# about this file\n# yaml-language-server: $schema=x.json\nid: x\nkind: access\n"
    "charter: 1\n",
    "blank lines": "\n\ncharter: 1\n\n\n\nkind: tiering\n\n\n",
    "unquoted timestamps": "charter: 1\nkind: access\nexceptions:\n  - expires: 2026-12-31 23:59:59 -5\n    id: w\n",
    "document markers": "%YAML 1.1\n--- # start\nkind: tiering\ncharter: 1\n...\n# after the end\n",
    "wrapped text": "kind: tiering\ncharter: 1\ntables:\n- rules:\n  - then: x\n    message: a message the officer\n"
    "          wrapped over   \n       three lines   # why\n    id: r\n  id: t\n",
    "one-key maps in a list": "kind: escalation\ncharter: 1\npriority: [{tier: high}, {factor: 0.5, tier: low}]\n",
}


def charter(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("*.yaml"))}


@pytest.fixture
def scrambled(tmp_path: Path) -> Path:
    d = tmp_path / "policies"
    d.mkdir()
    for p in SHIPPED:
        (d / p.name).write_text(scramble(p.read_text(encoding="utf-8")), encoding="utf-8")
    return d


# -- the canonical form ------------------------------------------------------------------------


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_policies_are_in_canonical_form(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert format_text(text, str(path)) == text


def test_check_passes_on_the_shipped_policies_and_writes_nothing() -> None:
    before = snapshot(POLICIES)
    r = charter("fmt", "--check", "policies")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout == ""
    assert r.stderr.strip() == f"0 file(s) would be reformatted, {len(SHIPPED)} unchanged"
    assert snapshot(POLICIES) == before


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_a_scrambled_shipped_policy_comes_back_byte_for_byte(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    mixed = scramble(text)
    assert mixed != text and load_text(mixed.encode(), "x").data == load_text(text.encode(), "x").data
    assert format_text(mixed, str(path)) == text


def test_order_indentation_and_comment_placement() -> None:
    assert format_text(SCRAMBLED) == CANONICAL


@pytest.mark.parametrize("text", [SCRAMBLED, *(scramble(p.read_text(encoding="utf-8")) for p in SHIPPED)])
def test_formatting_is_idempotent(text: str) -> None:
    once = format_text(text)
    assert format_text(once) == once


@pytest.mark.parametrize("name", list(ODD))
def test_odd_inputs_keep_their_meaning_and_are_fixed_points(name: str) -> None:
    text = ODD[name]
    once = format_text(text, name)
    assert load_text(once.encode(), name).data == load_text(text.encode(), name).data
    assert format_text(once, name) == once
    assert once.endswith("\n") and not once.endswith("\n\n") and "\r" not in once


def test_odd_inputs_come_out_as_documented() -> None:
    assert format_text(ODD["crlf, no final newline"]) == "charter: 1   # version\nkind: tiering\nid: x\n"
    assert format_text(ODD["blank lines"]) == "charter: 1\n\nkind: tiering\n"
    first, second = format_text(ODD["modeline not first"]).splitlines()[:2]
    assert (first, second) == ("# yaml-language-server: $schema=x.json", "# about this file")
    assert "    expires: 2026-12-31 23:59:59 -5\n" in format_text(ODD["unquoted timestamps"])
    assert "    expr: >-   # folded\n      a\n      + b\n" in format_text(ODD["block scalar with a comment"])
    wrapped = "        message: a message the officer\n          wrapped over\n          three lines   # why\n"
    assert wrapped in format_text(ODD["wrapped text"])  # line breaks kept, continuation 2 deeper than the key
    assert "priority: [{tier: high}, {tier: low, factor: 0.5}]\n" in format_text(ODD["one-key maps in a list"])


edits = st.lists(
    st.tuples(st.integers(0, 10_000), st.sampled_from(["end", "above", "blank", "wide"]), st.integers(0, 3)),
    min_size=1,
    max_size=6,
)


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(source=st.sampled_from(SHIPPED), mixed=st.booleans(), changes=edits)
def test_comments_anywhere_are_kept_or_the_file_is_refused(
    source: Path, mixed: bool, changes: list[tuple[int, str, int]]
) -> None:
    """Comments and blank lines added anywhere: the result keeps every comment (``check`` counts them),
    means the same and is a fixed point; or the file is refused with a located error. Nothing else."""
    text = source.read_text(encoding="utf-8")
    lines = (scramble(text) if mixed else text).splitlines()
    for n, (at, edit, depth) in enumerate(changes):
        i = at % len(lines)
        indent = " " * (2 * depth)
        if edit == "end":
            lines[i] += f"   # note {n}"
        elif edit == "above":
            lines.insert(i, f"{indent}# comment {n}")
        elif edit == "blank":
            lines.insert(i, "")
        else:  # "wide": more space after a key
            lines[i] = lines[i].replace(": ", ":   ", 1)
    edited = "\n".join(lines) + "\n"
    try:
        original = load_text(edited.encode(), "p.yaml").data
    except PolicyErrors:
        return  # the edit broke the YAML (a comment inside a block scalar's indentation, ...)
    try:
        once = format_text(edited, "p.yaml")
    except PolicyErrors as exc:
        assert all(e.location.line >= 1 for e in exc.errors)
        return
    assert load_text(once.encode(), "p.yaml").data == original
    assert format_text(once, "p.yaml") == once


# -- meaning ---------------------------------------------------------------------------------------


def test_formatted_policies_load_to_the_same_data_and_decide_the_same(
    scrambled: Path, customers: list[dict[str, Any]], now: datetime
) -> None:
    before = Engine(scrambled)
    data = {p.name: load_text(p.read_bytes(), p.name).data for p in scrambled.iterdir()}
    assert main(["fmt", str(scrambled)]) == 0
    assert {p.name: load_text(p.read_bytes(), p.name).data for p in scrambled.iterdir()} == data
    assert snapshot(scrambled) == snapshot(POLICIES)  # and the shipped text, byte for byte
    after = Engine(scrambled)
    for engine in (before, after):
        engine.use_snapshot(engine.build_snapshot(customers, now=now))
    cases = [("tiering", c) for c in customers[:40]] + [("classification", c) for c in customers[:10]]
    for domain in ("access", "retention", "escalation"):
        with (REQUESTS / f"{domain}.jsonl").open(encoding="utf-8") as f:
            cases += [(domain, json.loads(line)) for line, _ in zip(f, range(15), strict=False)]
    for domain, facts in cases:
        old, new = before.evaluate(domain, facts, now=now), after.evaluate(domain, facts, now=now)
        assert (new.outputs, new.fired_ids) == (old.outputs, old.fired_ids), (domain, facts.get("id"))
    tiers = {before.evaluate("tiering", c, now=now).outputs["value_tier"] for c in customers[:40]}
    assert len(tiers) >= 3 and len({d for d, _ in cases}) == 5  # the comparison covers real variety


def test_a_change_of_meaning_is_refused_where_it_happens() -> None:
    doc = load_text(MINIMAL.encode(), "t.yaml")
    with pytest.raises(PolicyErrors) as exc:
        check(doc, MINIMAL.replace("min: 0", "min: 1"))
    (err,) = exc.value.errors
    assert (err.code, str(err.location)) == ("P904", "t.yaml:5:28")
    assert err.message == "formatting would change `facts.clv.min`"
    with pytest.raises(PolicyErrors) as exc:
        check(doc, MINIMAL.replace("[gold, silver]", "[silver, gold]"))
    assert str(exc.value.errors[0].location) == "t.yaml:8:33"
    clv, complaints = MINIMAL.splitlines(keepends=True)[4:6]
    swapped = MINIMAL.replace(clv + complaints, complaints + clv)
    with pytest.raises(PolicyErrors) as exc:  # facts are named by the officer: their order is kept
        check(doc, swapped)
    assert exc.value.errors[0].message == "formatting would change `facts`"


def test_a_lost_comment_is_refused_where_it_was() -> None:
    text = MINIMAL.replace("hit: first", "hit: first   # the first match decides")
    doc = load_text(text.encode(), "t.yaml")
    with pytest.raises(PolicyErrors) as exc:
        check(doc, MINIMAL)
    (err,) = exc.value.errors
    assert (err.code, str(err.location)) == ("P902", "t.yaml:11:18")
    assert err.message == "formatting would lose the comment `# the first match decides`"
    check(doc, text)  # the same text passes


# -- the command -----------------------------------------------------------------------------------


def test_a_syntax_error_is_reported_where_it_is_and_the_file_left_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_bytes(b"kind: tiering\ncharter: 1\nfacts:\n  clv: {type: number\n  x: 1\n")
    good = tmp_path / "good.yaml"
    good.write_text(scramble((POLICIES / "tiering.yaml").read_text(encoding="utf-8")), encoding="utf-8")
    before = broken.read_bytes()
    assert main(["fmt", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert f"{broken}:4:8: the `{{` opened on line 4 is never closed [P044]" in err.splitlines(), err
    assert broken.read_bytes() == before
    assert out == f"reformatted {good}\n"  # the other file is still formatted
    assert good.read_text(encoding="utf-8") == (POLICIES / "tiering.yaml").read_text(encoding="utf-8")
    assert err.strip().endswith("1 file(s) reformatted, 0 unchanged, 1 refused")


def test_check_lists_what_would_change_writes_nothing_and_exits_1(
    scrambled: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(scrambled)
    assert main(["fmt", "--check", str(scrambled)]) == 1
    out, _ = capsys.readouterr()
    assert out.splitlines() == [f"would reformat {scrambled / p.name}" for p in SHIPPED]
    assert snapshot(scrambled) == before
    assert main(["fmt", str(scrambled)]) == 0
    assert main(["fmt", "--check", str(scrambled)]) == 0
    assert main(["fmt", "--check", str(scrambled / "access.yaml")]) == 0


def test_diff_shows_the_change_writes_nothing_and_exits_0(scrambled: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = scrambled / "retention.yaml"
    before = target.read_bytes()
    assert main(["fmt", "--diff", str(target)]) == 0
    out, _ = capsys.readouterr()
    assert out.startswith(f"--- {target}\n+++ {target}\n@@ ")
    assert (
        '\n-    -   clause: "CRM Spec 2025 §6.1; PIPL Art. 19"\n' in out and "\n+  - id: sensitive-identifiers\n" in out
    )
    assert target.read_bytes() == before
    assert main(["fmt", "--check", "--diff", str(target)]) == 1  # both: the diff, and exit 1


def test_rewrite_keeps_the_file_mode_and_leaves_no_temporary_file(scrambled: Path) -> None:
    target = scrambled / "classification.yaml"
    target.chmod(0o640)
    assert main(["fmt", str(target)]) == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(p.name for p in scrambled.iterdir()) == [p.name for p in SHIPPED]


def test_default_path_and_a_missing_path(tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "t.yaml").write_text("kind: tiering\ncharter: 1\n", encoding="utf-8")
    r = charter("fmt", cwd=tmp_path)
    assert (r.returncode, r.stdout) == (0, "reformatted policies/t.yaml\n"), r.stderr
    assert (tmp_path / "policies" / "t.yaml").read_text(encoding="utf-8") == "charter: 1\nkind: tiering\n"
    r = charter("fmt", "nowhere", cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.splitlines()[0] == "error: `nowhere` is not a file or directory"


# -- editor support ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_the_modeline_names_the_schema_of_the_files_kind(path: Path) -> None:
    """test_docs checks the modeline is there and its file exists; here: it is the right schema."""
    first = path.read_text(encoding="utf-8").splitlines()[0]
    schema = json.loads((path.parent / first.split("$schema=", 1)[1]).read_text(encoding="utf-8"))
    kind = load_text(path.read_bytes(), str(path)).data["kind"]
    assert schema["properties"]["kind"] == {"const": kind}


def test_every_command_in_the_editor_guide_works(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "editor.md").read_text(encoding="utf-8")
    commands = [
        line.split("#")[0].split()
        for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S)
        for line in block.splitlines()
        if line.startswith(".venv/bin/charter ")
    ]
    assert len(commands) >= 4
    (tmp_path / "policies").mkdir()
    for p in SHIPPED:
        (tmp_path / "policies" / p.name).write_bytes(p.read_bytes())
    for command in commands:
        r = charter(*command[1:], cwd=tmp_path)
        assert r.returncode == 0, (command, r.stdout, r.stderr)
    assert snapshot(tmp_path / "policies") == snapshot(POLICIES)
    written = {p.name for p in (tmp_path / "editor-schemas").iterdir()}
    shipped = {p.name for p in (ROOT / "engine" / "schemas").glob("*.schema.json")}
    # every installed domain's schema: the built-in ones Charter ships, and any a plugin adds
    extra = {f"{k}.schema.json" for k, d in build_registry().domains.items() if d.plugin not in BUILTIN_PLUGINS}
    assert written == shipped | extra and not shipped & extra
