"""The workbench's "why not?", "Try a decision", the upload of an edited policy directory, the
what-if replay against the decision log and the dashboards over time (docs/workbench.md),
through the service's own application on the project and log of tests/test_web.py.

Each figure a page shows is checked against the engine or the log: the counterfactual is
the one ``engine.audit.whynot.why_not`` gives for the same decision, the what-if count is
``charter replay --against``'s, the daily tiers are counted from the log's records.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator

import pytest
from conftest import EXAMPLES, NOW, POLICIES
from starlette.testclient import TestClient
from test_web import BASE, REQUESTS, Served, get, lines, logged, served, snapshot, text_of, tokens

from engine.api import Engine
from engine.audit.protect import Protector, load_key
from engine.audit.replay import Replayer, records
from engine.audit.whynot import why_not
from engine.inputs import parse_now
from engine.plugins import open_store
from engine.population import Snapshot
from engine.serve.app import create_app
from engine.serve.service import Service, TimedLog
from engine.web.render import ticks

__all__ = ["served", "snapshot"]  # the fixtures of tests/test_web.py, shared


def post(served: Served, url: str, status: int = 200, **kwargs: object) -> str:
    response = served.client.post(url, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == status, (url, response.status_code, response.text[:600])
    return response.text


# -- why not? ------------------------------------------------------------------------------------


def test_try_a_decision_shows_the_outputs_reasons_trace_and_what_would_change_it(
    served: Served, snapshot: Snapshot
) -> None:
    customer = lines(EXAMPLES, 3)[2]
    page = post(served, "/ui/try", data={"domain": "tiering", "facts": json.dumps(customer), "now": "2025-06-30"})
    engine = Engine(POLICIES, snapshot=snapshot)
    decision = engine.evaluate("tiering", customer, now=NOW, explain=True)
    want = why_not(engine.program("tiering", NOW), decision, customer, engine.registry.domains["tiering"])
    assert want  # a band above or below, at least
    for line in want:
        assert str(ticks(line)) in page
    assert f'<th scope="row">value_tier</th><td>{decision.outputs["value_tier"]}</td>' in page
    for rule in decision.fired:
        assert f"<code>{rule.id}</code>" in page
    assert '<pre class="trace">' in page and "value-tier/value-high: scores.value &gt;= cut point" in page
    assert len(logged(served)) == sum(len(v) for v in served.ids.values())  # nothing was logged


def test_try_a_denied_access_names_the_grant_that_would_allow_it(served: Served, snapshot: Snapshot) -> None:
    engine = Engine(POLICIES, snapshot=snapshot)
    request = next(
        r for r in lines(REQUESTS / "access.jsonl", 50) if engine.evaluate("access", r, now=NOW).outputs["denied"]
    )
    page = post(served, "/ui/try", data={"domain": "access", "facts": json.dumps(request), "now": "2025-06-30"})
    decision = engine.evaluate("access", request, now=NOW, explain=True)
    want = why_not(engine.program("access", NOW), decision, request, engine.registry.domains["access"])
    assert want
    words = text_of(page)
    for line in want:
        assert text_of(str(ticks(line))) in words


def test_try_refuses_what_is_not_one_json_object_and_lists_bad_facts(served: Served) -> None:
    assert "C093" in post(served, "/ui/try", 422, data={"domain": "tiering", "facts": "{not json", "now": "2025-06-30"})
    assert "C093" in post(served, "/ui/try", 422, data={"domain": "tiering", "facts": "[1, 2]", "now": "2025-06-30"})
    assert "C060" in post(served, "/ui/try", 404, data={"domain": "tierin", "facts": "{}", "now": "2025-06-30"})
    bad = {**lines(EXAMPLES, 1)[0], "purchases_12m": "a lot"}
    page = post(served, "/ui/try", data={"domain": "tiering", "facts": json.dumps(bad), "now": "2025-06-30"})
    assert 'role="alert">These facts cannot be decided' in page and "purchases_12m" in page
    form = get(served, "/ui/try")
    assert 'for="t-facts"' in form and '<form method="post" action="/ui/try"' in form


def test_a_logged_decision_shows_why_not_only_to_a_token_that_may_unseal(served: Served) -> None:
    record_id = served.by_customer["C000042"][0]
    body = next(b for b in logged(served) if b["subject"] == "C000042" and b["domain"] == "tiering")
    assert served.service.store is not None
    with Replayer(served.service.store, served.service.protector) as replayer:
        decision = replayer.decide(body, logged=True, explain=True)
    facts = lines(EXAMPLES, 42)[41]
    engine = Engine(POLICIES, snapshot=served.service.engine.snapshot)
    want = why_not(engine.program("tiering", NOW), decision, facts, engine.registry.domains["tiering"])
    assert want
    with TestClient(create_app(served.service, auth=tokens()), base_url=BASE) as client:
        url = f"/ui/log/{record_id}"
        officer = client.get(url, headers={"Authorization": "Bearer officer-secret"}).text
        auditor = client.get(url, headers={"Authorization": "Bearer auditor-secret"}).text
    for line in want:
        assert str(ticks(line)) in officer
        assert str(ticks(line)) not in auditor
    assert '<pre class="trace">' in officer and '<pre class="trace">' not in auditor
    assert "shown to a token allowed to unseal" in auditor


# -- upload --------------------------------------------------------------------------------------


def edited_files(served: Served) -> list[tuple[str, tuple[str, bytes, str]]]:
    root = served.root / "edited"
    return [("files", (f"edited/{p.name}", p.read_bytes(), "application/yaml")) for p in sorted(root.glob("*.yaml"))]


def test_an_uploaded_directory_is_compared_as_a_named_one(served: Served) -> None:
    fields = {"facts": "examples/customers.jsonl", "now": "2025-06-30"}
    named = text_of(get(served, "/ui/impact", edited="edited", **fields))
    files = [*edited_files(served), ("files", ("edited/README.md", b"# notes", "text/markdown"))]
    files.append(("files", ("edited/tests/tiering.yaml", b"cases: []", "application/yaml")))
    page = post(served, "/ui/impact", data=fields, files=files)
    words = text_of(page)
    summary = named[named.index("Decisions changed") :].split(" record(s)")[0]
    assert summary in words and "tiering decision(s) change" in summary
    assert "from the 80th percentile to the 70th percentile" in words
    assert "Left out: edited/README.md , edited/tests/tiering.yaml" in words
    plain = [("files", (name.split("/")[1], data, kind)) for _, (name, data, kind) in edited_files(served)]
    assert summary in text_of(post(served, "/ui/impact", data=fields, files=plain))  # the plain multi-file fallback


def test_the_upload_refuses_names_with_a_path_and_bounds_the_size(served: Served) -> None:
    for name in ("../tiering.yaml", "a/../b.yaml", "a\\b.yaml", "/etc/x.yaml", "edited//x.yaml"):
        page = post(served, "/ui/impact", 422, files=[("files", (name, b"x: 1", "application/yaml"))])
        assert "C092" in page, name
    assert "C092" in post(served, "/ui/impact", 422, files=[("files", ("notes.txt", b"x", "text/plain"))])
    two = [("files", ("a/x.yaml", b"x: 1", "text/yaml")), ("files", ("b/y.yaml", b"y: 1", "text/yaml"))]
    assert "more than one folder" in post(served, "/ui/impact", 422, files=two)
    many = [("files", (f"f{i}.yaml", b"x: 1", "text/yaml")) for i in range(201)]
    assert "C094" in post(served, "/ui/impact", 400, files=many)  # past MAX_FILES: a page, not a crash
    small = create_app(served.service, max_body=4096)
    with TestClient(small, base_url=BASE) as client:
        files = edited_files(served)
        response = client.post("/ui/impact", files=files)
        assert response.status_code == 413 and "C068" in response.text  # the whole body over max_body


# -- what-if replay against the log ---------------------------------------------------------------


def test_the_what_if_replay_counts_the_logged_decisions_the_edit_changes(served: Served) -> None:
    assert served.service.store is not None
    with Replayer(served.service.store, served.service.protector, against=served.root / "edited") as replayer:
        report = replayer.run()
    assert report.by_domain  # the widened band changes some logged tiers
    with TestClient(create_app(served.service, auth=tokens()), base_url=BASE) as client:
        # it decides the log's sealed facts: a token that may read the log and unseal it
        officer = client.get(
            "/ui/impact", params={"edited": "edited", "replay": "1"}, headers={"Authorization": "Bearer officer-secret"}
        )
        auditor = client.get(
            "/ui/impact", params={"edited": "edited", "replay": "1"}, headers={"Authorization": "Bearer auditor-secret"}
        )
    assert officer.status_code == 200
    page = officer.text
    words = text_of(page)
    assert f"{len(report.changed)} of {report.total} logged decision(s) would be decided otherwise" in words
    for domain, n in report.by_domain.items():
        assert f'<th scope="row">{domain}</th><td class="num">{n}</td>' in page
    assert f'<a href="/ui/log/{report.changed[0]["id"]}">#{report.changed[0]["seq"]}</a>' in page
    with TestClient(create_app(served.service, auth=tokens()), base_url=BASE) as client:
        backend = client.get(
            "/ui/impact", params={"edited": "edited", "replay": "1"}, headers={"Authorization": "Bearer backend-secret"}
        )
    for refused in (backend, auditor):  # an edit could be written to tell a sealed fact by what it changes
        assert refused.status_code == 200 and "<code>log:read</code> and <code>unseal</code>" in refused.text
        assert "logged decision(s) would be decided otherwise" not in refused.text


# -- dashboards over time -------------------------------------------------------------------------


DAYS = ("2025-06-28", "2025-06-29", "2025-06-30")


@pytest.fixture(scope="module")
def over_days(tmp_path_factory: pytest.TempPathFactory, snapshot: Snapshot) -> Iterator[tuple[TestClient, Service]]:
    """A log of decisions made for three days: tiering, escalation, access and retention."""
    root = tmp_path_factory.mktemp("days")
    store = open_store(f"sqlite:///{root / 'log.db'}")
    protector = Protector(store, load_key(root / "log.key", create=True))
    engine = Engine(POLICIES, snapshot=snapshot, log=TimedLog(store, protector))
    customers = lines(EXAMPLES, 60)
    requests = {d: lines(REQUESTS / f"{d}.jsonl", 60) for d in ("escalation", "access", "retention")}
    for i, day in enumerate(DAYS):
        now = parse_now(day)
        for c in customers[i * 20 : (i + 1) * 20]:
            engine.evaluate("tiering", c, now=now)
        for domain, items in requests.items():
            for r in items[i * 20 : (i + 1) * 20]:
                engine.evaluate(domain, r, now=now)
    service = Service(engine, store=store, protector=protector, watch_interval=None)
    with TestClient(create_app(service), base_url=BASE) as client:
        yield client, service


def cells(page: str, section: str, row: str) -> dict[str, str]:
    """The cells of one row of a section's table: value -> count (and `rate`)."""
    part = page[page.index(f'<h2 id="{section}">') :].split("</table>")[0]
    found = part.split(f'<th scope="row">{row}</th>')[1].split("</tr>")[0]
    out = {v: n for v, n in re.findall(r'data-value="([^"]*)">(\d+)<', found) if n != "0"}
    rate = re.search(r'data-rate="[^"]*">([^<]*)<', found)
    return {**out, "rate": rate.group(1) if rate else ""}


def test_the_trends_count_what_the_log_holds_per_day_and_by_category(over_days: tuple[TestClient, Service]) -> None:
    client, service = over_days
    assert service.store is not None
    bodies = [b for _, _, b in records(service.store)]
    page = client.get("/ui/dashboard/trends").text
    assert "<svg" in page and "<script" not in page
    tiers = Counter((b["time"][:10], b["outputs"]["value_tier"]) for b in bodies if b["domain"] == "tiering")
    for day in DAYS:
        got = cells(page, "tiers", day)
        assert {k: int(v) for k, v in got.items() if k != "rate"} == {t: n for (d, t), n in tiers.items() if d == day}
    escalation = [b for b in bodies if b["domain"] == "escalation"]
    categories = Counter(b["facts"]["ticket"]["category"] for b in escalation)
    assert len(categories) > 1
    for cat in categories:
        mine = [b for b in escalation if b["facts"]["ticket"]["category"] == cat]
        breached = sum(b["outputs"]["state"] == "breached" for b in mine)
        got = cells(page, "sla", cat)
        assert int(got.get("breached", "0")) == breached
        assert got["rate"] == f"{100 * breached / len(mine):.1f}%"
    assert "breached rate by category, per day" in page  # the rate over time, three days
    levels = Counter(str(b["outputs"]["level"]) for b in escalation if b["time"].startswith(DAYS[0]))
    assert {k: int(v) for k, v in cells(page, "levels", DAYS[0]).items() if k != "rate"} == dict(levels)
    access = [b for b in bodies if b["domain"] == "access" and b["outputs"]["effect"] in ("deny", "partial")]
    purpose = Counter((b["facts"]["purpose"], b["outputs"]["effect"]) for b in access)
    for (p, effect), n in purpose.items():
        assert int(cells(page, "denials-purpose", p)[effect]) == n
    assert "allow" not in re.findall(
        r'data-value="(\w+)"', page[page.index('id="denials-role"') :].split("</table>")[0]
    )
    held = sum(
        b["outputs"]["status"] == "held" for b in bodies if b["domain"] == "retention" and b["time"][:10] == DAYS[0]
    )
    assert int(cells(page, "retention", DAYS[0]).get("held", "0")) == held
    months = client.get("/ui/dashboard/trends", params={"by": "month"}).text
    assert int(cells(months, "tiers", "2025-06")["high"]) == sum(n for (d, t), n in tiers.items() if t == "high")
    only = client.get("/ui/dashboard/trends", params={"since": DAYS[2]}).text
    assert f'<th scope="row">{DAYS[0]}</th>' not in only and f'<th scope="row">{DAYS[2]}</th>' in only
    assert "C064" in client.get("/ui/dashboard/trends", params={"by": "week"}).text


def test_try_a_decision_needs_the_decide_scope(served: Served) -> None:
    """It decides (logging nothing), so it asks for the scope /v1/decide asks for."""
    facts = {"domain": "tiering", "facts": json.dumps(lines(EXAMPLES, 1)[0]), "now": "2025-06-30"}
    with TestClient(create_app(served.service, auth=tokens()), base_url=BASE) as client:
        auditor = client.post("/ui/try", data=facts, headers={"Authorization": "Bearer auditor-secret"})
        backend = client.post("/ui/try", data=facts, headers={"Authorization": "Bearer backend-secret"})
    assert auditor.status_code == 403 and "decide" in auditor.text
    assert backend.status_code == 200 and "value_tier" in backend.text
