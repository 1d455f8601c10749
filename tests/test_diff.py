"""`charter diff OLD NEW`: a semantic diff of two policy directories, on real files."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES, NOW, POLICIES, ROOT

from engine import Engine
from engine.cli import main

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def charter(capsys: pytest.CaptureFixture[str]) -> Run:
    """Run `charter ARGS` in this process: (exit code, stdout, stderr)."""

    def run(*args: str | Path) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) >= count, f"{old!r} is not in {path.name}: the shipped policy changed"
    path.write_text(text.replace(old, new, count), encoding="utf-8")


def rule_block(text: str, rule_id: str) -> str:
    """The lines of the block-style rule `- id: RULE_ID`, up to the next rule or blank line."""
    m = re.search(rf"^( +)- id: {re.escape(rule_id)}\n(?:\1  .*\n)*", text, flags=re.M)
    assert m is not None, rule_id
    return m.group(0)


def line_of(path: Path, needle: str, after: str | None = None) -> int:
    """1-based line of the first line holding `needle` (at or after the line holding `after`)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    start = line_of(path, after) - 1 if after else 0
    return next(n for n, line in enumerate(lines[start:], start + 1) if needle in line)


def copy_policies(root: Path) -> tuple[Path, Path]:
    old, new = root / "old", root / "new"
    shutil.copytree(POLICIES, old)
    shutil.copytree(POLICIES, new)
    return old, new


def edit_threshold_and_order(new: Path) -> None:
    """The edit docs/diff.md shows: a band moves to the top 25%, two `hit: first` rules swap."""
    tiering = new / "tiering.yaml"
    edit(
        tiering,
        'value: high, from: 80, to: 100, message: "top 20%',
        'value: high, from: 75, to: 100, message: "top 25%',
    )
    edit(
        tiering,
        'value: medium, from: 50, to: 80, message: "next 30%',
        'value: medium, from: 50, to: 75, message: "next 25%',
    )
    text = tiering.read_text(encoding="utf-8")
    decline, growth = rule_block(text, "lifecycle-decline"), rule_block(text, "lifecycle-growth")
    tiering.write_text(text.replace(decline + growth, growth + decline), encoding="utf-8")
    access = new / "access.yaml"
    edit(access, "    roles: [sales_manager]\n", "    roles: [sales_manager, key_account_manager]\n")


def edit_everything(new: Path) -> None:
    edit_threshold_and_order(new)
    tiering = new / "tiering.yaml"
    text = tiering.read_text(encoding="utf-8")
    tiering.write_text(text.replace(rule_block(text, "risk-churn"), ""), encoding="utf-8")
    edit(
        tiering,
        "        message: high-risk customers are monitored (source)\n",
        "        message: high-risk customers are monitored (source)\n"
        "      - id: monitor-churn\n"
        "        when: scores.churn >= 0.6\n"
        "        then: true\n"
        "        message: customers likely to leave are monitored\n",
    )
    edit(tiering, "contact_cadence_days: 7,", "contact_cadence_days: 5,")
    edit(
        tiering,
        "when: customer.fraud_flags > 0\n        then: high",
        "when: customer.fraud_flags>0\n        then: high",
    )
    access = new / "access.yaml"
    text = access.read_text(encoding="utf-8")
    audit = rule_block(text, "audit-read")
    access.write_text(text.replace(audit, audit.replace("roles: [auditor]", "roles: [compliance_officer]")))
    # classification: comments, quoting and layout only
    classification = new / "classification.yaml"
    edit(classification, "# by field name: the examples", "#   by field name (edited comment): the examples")
    edit(classification, "    fields: [id, name, gender,", "    fields:   [ id,  name, gender,")
    edit(classification, "    class: basic\n", '    class: "basic"    # quoted now\n')


@pytest.fixture(scope="module")
def edited(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    old, new = copy_policies(tmp_path_factory.mktemp("diff"))
    edit_everything(new)
    return old, new


@pytest.fixture(scope="module")
def text_and_json(edited: tuple[Path, Path]) -> tuple[str, dict[str, Any]]:
    """The diff of the edited copy, as text and as JSON (run once for the module)."""
    old, new = edited
    out = []
    for fmt in ("text", "json"):
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            assert main(["diff", str(old), str(new), "--format", fmt]) == 0
        out.append(buf.getvalue())
    return out[0], json.loads(out[1])


# --------------------------------------------------------------------------------------------
# what changed, in words, with both locations
# --------------------------------------------------------------------------------------------


def test_threshold_change_names_both_locations_and_percentiles(
    edited: tuple[Path, Path], text_and_json: tuple[str, dict[str, Any]]
) -> None:
    old, new = edited
    text, _ = text_and_json
    at_old, at_new = line_of(old / "tiering.yaml", "id: value-high"), line_of(new / "tiering.yaml", "id: value-high")
    assert (
        f"  band `value-high` (tiering.yaml:{at_old} → tiering.yaml:{at_new}): "
        "`from` changed from the 80th percentile to the 75th percentile"
    ) in text.splitlines()
    assert "band `value-medium`" in text and "`to` changed from the 80th percentile to the 75th percentile" in text


def test_added_and_removed_rules_name_their_table_and_file_line(
    edited: tuple[Path, Path], text_and_json: tuple[str, dict[str, Any]]
) -> None:
    old, new = edited
    text, _ = text_and_json
    lines = text.splitlines()
    removed = line_of(old / "tiering.yaml", "id: risk-churn")
    assert f"  rule `risk-churn` (was tiering.yaml:{removed}): removed from table `risk`" in lines
    added = line_of(new / "tiering.yaml", "id: monitor-churn")
    assert (
        f"  rule `monitor-churn` (now tiering.yaml:{added}): added to table `monitoring` (hit: first), "
        "after `monitor-high-risk`: when `scores.churn >= 0.6`, then true"
    ) in lines


def test_reordering_a_hit_first_table_is_reported(
    edited: tuple[Path, Path], text_and_json: tuple[str, dict[str, Any]]
) -> None:
    old, new = edited
    text, _ = text_and_json
    was, now = (
        line_of(old / "tiering.yaml", "id: lifecycle-growth"),
        line_of(new / "tiering.yaml", "id: lifecycle-growth"),
    )
    assert now < was
    expected = (
        f"  rule `lifecycle-growth` (tiering.yaml:{was} → tiering.yaml:{now}): "
        "now comes before `lifecycle-decline` in table `lifecycle` (hit: first)"
    )
    assert expected in text.splitlines()
    assert "lifecycle-decline` (" not in text  # one swap, told once


def test_role_list_changes_are_told_value_by_value(
    edited: tuple[Path, Path], text_and_json: tuple[str, dict[str, Any]]
) -> None:
    old, new = edited
    text, _ = text_and_json
    lines = text.splitlines()
    was = line_of(old / "access.yaml", "roles:", after="id: audit-read")
    now = line_of(new / "access.yaml", "roles:", after="id: audit-read")
    where = f"(access.yaml:{was} → access.yaml:{now})"
    assert f"  rule `audit-read` {where}: added `roles` value `compliance_officer`" in lines
    assert f"  rule `audit-read` {where}: removed `roles` value `auditor`" in lines
    assert any(
        line.startswith("  rule `sales-department` (") and line.endswith("added `roles` value `key_account_manager`")
        for line in lines
    )


def test_nested_field_and_expression_layout(text_and_json: tuple[str, dict[str, Any]]) -> None:
    text, _ = text_and_json
    assert "rule `treat-high` (" in text and "`then.contact_cadence_days` changed from 7 to 5" in text
    assert "risk-fraud" not in text  # `customer.fraud_flags>0` means what `customer.fraud_flags > 0` does


def test_comment_and_layout_edits_are_no_semantic_change(text_and_json: tuple[str, dict[str, Any]]) -> None:
    text, data = text_and_json
    lines = text.splitlines()
    assert "classification.yaml (classification): no semantic change (only comments or formatting differ)" in lines
    assert "retention.yaml (retention): unchanged" in lines
    assert not [c for c in data["changes"] if c["domain"] in ("classification", "retention")]
    assert lines[-1] == f"{data['semantic_changes']} semantic change(s) in 2 policy file(s)"


def test_json_lists_every_change_with_its_fields(
    edited: tuple[Path, Path], text_and_json: tuple[str, dict[str, Any]]
) -> None:
    old, new = edited
    _, data = text_and_json
    keys = {"kind", "domain", "rule", "field", "old", "new", "old_location", "new_location"}
    assert all(keys <= set(c) for c in data["changes"])
    (band,) = [c for c in data["changes"] if c["rule"] == "value-high" and c["field"] == "from"]
    line = line_of(old / "tiering.yaml", "id: value-high")
    assert (band["kind"], band["domain"], band["field"], band["old"], band["new"]) == (
        "rule_changed",
        "tiering",
        "from",
        80,
        75,
    )
    assert band["old_location"].startswith(f"{old / 'tiering.yaml'}:{line}:")
    assert band["new_location"].startswith(f"{new / 'tiering.yaml'}:{line}:")
    kinds = Counter(c["kind"] for c in data["changes"])
    assert kinds["rule_added"] == 1 and kinds["rule_removed"] == 1 and kinds["order_changed"] == 1
    removed = next(c for c in data["changes"] if c["kind"] == "rule_removed")
    assert removed["new_location"] is None and removed["old"]["when"] == "scores.churn >= 0.6"
    status = {f["domain"]: f["status"] for f in data["files"]}
    assert status == {
        "access": "changed",
        "classification": "formatting only",
        "escalation": "unchanged",
        "retention": "unchanged",
        "tiering": "changed",
    }
    assert sorted((c["rule"], c["field"]) for c in data["changes"]) == [
        ("audit-read", "roles"),
        ("audit-read", "roles"),
        ("lifecycle-growth", None),
        ("monitor-churn", None),
        ("risk-churn", None),
        ("sales-department", "roles"),
        ("treat-high", "then.contact_cadence_days"),
        ("value-high", "from"),
        ("value-high", "message"),
        ("value-medium", "message"),
        ("value-medium", "to"),
    ]
    assert data["semantic_changes"] == 11


# --------------------------------------------------------------------------------------------
# more kinds of change
# --------------------------------------------------------------------------------------------


def test_moves_declarations_policy_keys_and_periods(tmp_path: Path, charter: Run) -> None:
    old, new = copy_policies(tmp_path)
    tiering = new / "tiering.yaml"
    text = tiering.read_text(encoding="utf-8")
    growth = rule_block(text, "lifecycle-growth")
    text = text.replace(growth, "").replace(
        "        message: high-risk customers are monitored (source)\n",
        "        message: high-risk customers are monitored (source)\n" + growth.replace("then: growth", "then: true"),
    )
    tiering.write_text(text, encoding="utf-8")
    edit(tiering, "title: Customer tiering and treatment", "title: Customer tiering")
    edit(
        tiering, "values: [high, medium, low], description: values", "values: [medium, high, low], description: values"
    )
    edit(new / "retention.yaml", "period: 5y", "period: 7y")
    edit(new / "escalation.yaml", "    after: 24h\n", "    after: 12h\n")
    edit(new / "access.yaml", "  supervisor: {inherits: [agent],", "  supervisor: {inherits: [agent, sales_rep],")
    code, out, _ = charter("diff", old, new)
    assert code == 0
    assert "rule `lifecycle-growth` (" in out and "moved from table `lifecycle` to table `monitoring`" in out
    assert "`then` changed from `growth` to true" in out
    assert "policy (tiering.yaml:9 → tiering.yaml:9): `title` changed from `Customer tiering and treatment`" in out
    assert "the order of `values` changed from `[high, medium, low]` to `[medium, high, low]`" in out
    assert "rule `transaction-records` (" in out and "`period` changed from 5 years to 7 years" in out
    assert "ladder step `level: 4` (" in out and "`after` changed from 24 hours to 12 hours" in out
    assert "role `supervisor` (" in out and "added `inherits` value `sales_rep`" in out


def test_reordering_classes_and_removing_a_file(tmp_path: Path, charter: Run) -> None:
    old, new = copy_policies(tmp_path)
    (new / "escalation.yaml").unlink()
    path = new / "classification.yaml"
    text = path.read_text(encoding="utf-8")
    commercial = rule_block(text, "commercially_sensitive")
    sensitive = text[text.index("  - id: sensitive\n") : text.index("\nrules:")]
    path.write_text(text.replace(commercial, "").replace(sensitive, sensitive + "\n" + commercial.rstrip("\n")))
    code, out, _ = charter("diff", old, new)
    assert code == 0
    assert "class `sensitive` (" in out and "now comes before `commercially_sensitive` in `classes`" in out
    assert re.search(r"policy file `escalation.yaml` \(was escalation.yaml:\d+\): policy `service-levels` removed", out)


# --------------------------------------------------------------------------------------------
# exit codes and errors
# --------------------------------------------------------------------------------------------


def test_exit_code_only_with_exit_code_and_only_for_semantic_changes(
    tmp_path: Path, edited: tuple[Path, Path], charter: Run
) -> None:
    old, new = edited
    assert charter("diff", old, new)[0] == 0
    assert charter("diff", old, new, "--exit-code")[0] == 1
    code, out, _ = charter("diff", old, old, "--exit-code")
    assert code == 0 and out.splitlines()[-1] == "no semantic change"
    layout = tmp_path / "layout"
    shutil.copytree(POLICIES, layout)
    edit(layout / "access.yaml", "# Access control", "# Access control, reviewed")
    edit(layout / "access.yaml", "    roles: [agent]\n", "    roles:\n      - agent\n")
    code, out, _ = charter("diff", POLICIES, layout, "--exit-code")
    assert code == 0, out
    assert "access.yaml (access): no semantic change (only comments or formatting differ)" in out


def test_a_broken_new_directory_gives_the_located_error(tmp_path: Path, charter: Run) -> None:
    old, new = copy_policies(tmp_path)
    edit(new / "tiering.yaml", "    hit: first\n", "    hit: frist\n")
    line = line_of(new / "tiering.yaml", "hit: frist")
    code, out, err = charter("diff", old, new)
    assert code == 1 and out == ""
    assert err.startswith(f"{new / 'tiering.yaml'}:{line}:10: `frist` is not allowed here [P022]")
    assert "help: did you mean `first`?" in err


def test_not_a_directory_and_unknown_domain(tmp_path: Path, charter: Run) -> None:
    code, _, err = charter("diff", POLICIES, tmp_path / "nowhere")
    assert code == 1 and f"error: `{tmp_path / 'nowhere'}` is not a directory" in err
    code, _, err = charter("diff", POLICIES, POLICIES, "--facts", EXAMPLES, "--domain", "tierng")
    assert code == 1 and "error: the old policies have no `tierng` policy\n  help: did you mean `tiering`?" in err


# --------------------------------------------------------------------------------------------
# what the edit does to decisions
# --------------------------------------------------------------------------------------------


def both_engines(old: Path, new: Path, customers: list[dict[str, Any]]) -> tuple[Engine, Engine]:
    """The independent computation: one snapshot, built with the old policy, for both."""
    before, after = Engine(old, log=None), Engine(new, log=None)
    snapshot = before.build_snapshot(customers, now=NOW)
    before.use_snapshot(snapshot)
    after.use_snapshot(snapshot)
    return before, after


def test_facts_counts_equal_two_engines(
    edited: tuple[Path, Path], customers: list[dict[str, Any]], charter: Run
) -> None:
    old, new = edited
    code, out, _ = charter(
        "diff", old, new, "--facts", EXAMPLES, "--now", "2025-06-30T00:00:00Z", "--format", "json", "--sample", "3"
    )
    assert code == 0
    impact = json.loads(out)["impact"]
    before, after = both_engines(old, new, customers)
    changed, tiers, first = 0, Counter[str](), []
    for facts in customers:
        a, b = before.evaluate("tiering", facts, now=NOW), after.evaluate("tiering", facts, now=NOW)
        if a.outputs != b.outputs:
            changed += 1
            first.append((a.subject, list(a.fired_ids), list(b.fired_ids)))
            if a.outputs["value_tier"] != b.outputs["value_tier"]:
                tiers[f"{a.outputs['value_tier']} -> {b.outputs['value_tier']}"] += 1
    assert changed > 100 and tiers["medium -> high"] > 0
    assert (impact["total"], impact["changed"]) == (len(customers), changed)
    assert impact["by_output"]["value_tier"] == dict(tiers)
    assert impact["bad_facts"] == {"both": 0, "old_only": 0, "new_only": 0}
    assert [(s["subject"], s["fired_before"], s["fired_after"]) for s in impact["sample"]] == first[:3]
    assert any("built with the old policy, used for both" in note for note in impact["notes"])
    code, text, _ = charter("diff", old, new, "--facts", EXAMPLES, "--now", "2025-06-30T00:00:00Z")
    assert f"  {changed:,} of {len(customers):,} decision(s) change" in text
    assert f"  value_tier: medium -> high ({tiers['medium -> high']})" in text.splitlines()


def test_percentiles_the_snapshot_lacks_are_noted(
    tmp_path: Path, customers: list[dict[str, Any]], charter: Run
) -> None:
    old, new = copy_policies(tmp_path)
    edit(new / "tiering.yaml", "value: high, from: 80,", "value: high, from: 80.5,")
    edit(new / "tiering.yaml", "value: medium, from: 50, to: 80,", "value: medium, from: 50, to: 80.5,")
    code, out, _ = charter("diff", old, new, "--facts", EXAMPLES, "--now", "2025-06-30", "--format", "json")
    assert code == 0
    impact = json.loads(out)["impact"]
    assert any("need percentile 80.5 of `value`, which the snapshot does not hold" in n for n in impact["notes"])
    before, after = Engine(old, log=None), Engine(new, log=None)  # each ranks against its own snapshot
    before.use_snapshot(before.build_snapshot(customers, now=NOW))
    after.use_snapshot(after.build_snapshot(customers, now=NOW))
    changed = sum(
        before.evaluate("tiering", c, now=NOW).outputs != after.evaluate("tiering", c, now=NOW).outputs
        for c in customers
    )
    assert impact["changed"] == changed > 0


def test_bad_facts_are_counted_apart(tmp_path: Path, customers: list[dict[str, Any]], charter: Run) -> None:
    old, new = copy_policies(tmp_path)
    edit(
        new / "tiering.yaml",
        "satisfaction: {type: number, min: 1, max: 5,",
        "satisfaction: {type: number, min: 1, max: 5, required: true,",
    )
    rows = [dict(c) for c in customers[:20]]
    rows[0]["annual_sales"] = "a lot"  # wrong under both policies
    for row in rows[1:9]:
        del row["satisfaction"]  # wrong under the new policy only
    facts = tmp_path / "few.jsonl"
    facts.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    args = ("diff", old, new, "--facts", facts, "--population", EXAMPLES, "--now", "2025-06-30", "--format", "json")
    code, out, _ = charter(*args)
    assert code == 0
    impact = json.loads(out)["impact"]
    assert impact["total"] == 20
    assert impact["bad_facts"] == {"both": 1, "old_only": 0, "new_only": 8}


def test_customers_are_decided_in_every_domain_without_domain(
    tmp_path: Path, customers: list[dict[str, Any]], charter: Run
) -> None:
    """Without `--domain` the facts are customers: each domain decides what it decides about
    them (as `POST /v1/customer` does), and the changes are counted per domain."""
    old, new = copy_policies(tmp_path)
    edit(new / "tiering.yaml", "value: high, from: 80,", "value: high, from: 75,")
    edit(new / "tiering.yaml", "value: medium, from: 50, to: 80,", "value: medium, from: 50, to: 75,")
    edit(
        new / "retention.yaml",
        "    period: 1y\n    starts: relationship_ended\n    action: delete",
        "    period: 1y\n    starts: relationship_ended\n    action: anonymise",
    )
    code, out, _ = charter("diff", old, new, "--facts", EXAMPLES, "--now", "2025-06-30", "--format", "json")
    assert code == 0
    report = json.loads(out)
    impacts = {i["domain"]: i for i in report["impacts"]}
    assert list(impacts) == ["tiering", "classification", "access", "escalation", "retention"]
    assert report["impact"] == report["impacts"][0]  # the one domain's report, as with --domain
    before, after = both_engines(old, new, customers)
    for domain, request in (("tiering", dict), ("classification", dict), ("retention", _retention_request)):
        changed, moved = 0, Counter[str]()
        for c in customers:
            a = before.evaluate(domain, request(c), now=NOW)
            b = after.evaluate(domain, request(c), now=NOW)
            changed += a.outputs != b.outputs
            if domain == "retention" and a.outputs["action"] != b.outputs["action"]:
                moved[f"{a.outputs['action']} -> {b.outputs['action']}"] += 1
        assert (impacts[domain]["total"], impacts[domain]["changed"]) == (len(customers), changed), domain
        if domain == "retention":
            assert changed > 1000 and impacts[domain]["by_output"]["action"] == dict(moved)
    assert impacts["classification"]["changed"] == 0
    for domain in ("access", "escalation"):  # they decide requests and tickets, not customers
        assert impacts[domain]["total"] == 0 and "nothing to decide" in impacts[domain]["notes"][0]
    code, text, _ = charter("diff", old, new, "--facts", EXAMPLES, "--now", "2025-06-30")
    assert text.splitlines()[-2:] == [
        f"decisions changed, by domain: tiering {impacts['tiering']['changed']:,} of 2,000; classification 0 of 2,000;"
        f" retention {impacts['retention']['changed']:,} of 2,000",
        "  not decided: `access`, `escalation`: nothing to decide from a customer's facts alone:"
        " pass `--domain` and a file of its requests",
    ]
    assert "decisions: `retention` for 2,000 record(s)" in text and "decisions: `access`" not in text
    code, out, _ = charter("diff", old, new, "--facts", EXAMPLES, "--now", "2025-06-30", "--domain", "retention")
    assert code == 0 and "decisions: `tiering`" not in out and "decisions changed, by domain" not in out


def _retention_request(customer: dict[str, Any]) -> dict[str, Any]:
    """A customer's record as retention decides it for `POST /v1/customer` (docs/serve.md)."""
    return {
        "customer": customer["id"],
        "record_type": "customer_profile",
        "record": dict(customer),
        "created_at": customer.get("first_purchase_at"),
        "last_activity_at": customer.get("last_purchase_at"),
    }


def test_without_facts_every_domains_changes_are_listed(tmp_path: Path, charter: Run) -> None:
    old, new = copy_policies(tmp_path)
    edit(new / "tiering.yaml", 'message: "top 20% of customers', 'message: "the top fifth of customers')
    edit(
        new / "access.yaml", 'actions: [export]\n    purposes: ["*"]', 'actions: [export, delete]\n    purposes: ["*"]'
    )
    code, out, _ = charter("diff", old, new, "--format", "json")
    assert code == 0
    files = {f["domain"]: f["status"] for f in json.loads(out)["files"]}
    assert files == {"access": "changed", "classification": "unchanged", "escalation": "unchanged",
                     "retention": "unchanged", "tiering": "changed"}  # fmt: skip


# --------------------------------------------------------------------------------------------
# the documentation's example is real output
# --------------------------------------------------------------------------------------------


def test_docs_example_output_is_what_the_command_prints(
    tmp_path: Path, charter: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = (ROOT / "docs" / "diff.md").read_text(encoding="utf-8")
    command, shown = re.search(r"```sh\n\$ (charter diff [^\n]+)\n```\n\n```text\n(.*?)```", doc, flags=re.S).groups()
    shutil.copytree(POLICIES, tmp_path / "policies")
    shutil.copytree(POLICIES, tmp_path / "my-edit")
    (tmp_path / "examples").mkdir()
    shutil.copy(EXAMPLES, tmp_path / "examples" / EXAMPLES.name)
    edit_threshold_and_order(tmp_path / "my-edit")
    monkeypatch.chdir(tmp_path)
    code, out, _ = charter(*command.split()[1:])
    assert code == 0

    def steady(text: str) -> str:  # line numbers and snapshot ids move as the shipped policies grow
        return re.sub(r"pop-[0-9a-f]+", "pop-…", re.sub(r"\.yaml:\d+", ".yaml:N", text)).rstrip("\n")

    assert steady(out) == steady(shown)


def test_a_renamed_file_is_paired_by_kind_and_is_no_semantic_change(tmp_path: Path, charter: Run) -> None:
    old, new = copy_policies(tmp_path)
    (new / "tiering.yaml").rename(new / "tiers.yaml")
    code, out, _ = charter("diff", old, new, "--exit-code")
    assert code == 0
    assert "tiering.yaml → tiers.yaml (tiering): unchanged" in out.splitlines()
    code, out, _ = charter("diff", old, new, "--format", "json")
    (renamed,) = json.loads(out)["changes"]
    assert renamed["kind"] == "file_renamed" and renamed["semantic"] is False
    assert renamed["new_location"].startswith(f"{new / 'tiers.yaml'}:")
