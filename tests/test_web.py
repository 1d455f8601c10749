"""The web workbench (engine/web, docs/workbench.md): every page under /ui/, through the service's
own application (its auth middleware included), on a copy of the shipped policies and a real
SQLite decision log written by a few decisions.

What the pages show is checked against the log and the engine: rule ids and lines, lint
findings on their lines, test results and coverage, the records a search finds, the counts of
the dashboard and of a changed band. Customer ids are the user's text: a hostile one is
escaped. One test drives the pages in a real headless Chromium (the system's, with Playwright),
by keyboard, and writes a screenshot of each page.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES, NOW, POLICIES, ROOT
from starlette.testclient import TestClient

from engine.api import Engine
from engine.audit.checkpoint import append_line, load_signing_key, public_pem, sign
from engine.audit.protect import Protector, load_key
from engine.audit.replay import records
from engine.plugins import open_store
from engine.population import Snapshot
from engine.serve.app import create_app
from engine.serve.auth import AuthConfig, Token, Tokens, digest
from engine.serve.service import Service, TimedLog
from engine.workbench.policytest.coverage import enumerate_rules

REQUESTS = ROOT / "examples" / "requests"
HOSTILE = '<script>alert("x")</script>'
CHROMIUM = Path("/usr/bin/chromium")
BASE = "http://127.0.0.1"  # the service without tokens answers loopback names only


def lines(path: Path, n: int) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for _, line in zip(range(n), f, strict=False)]


def text_of(html: str) -> str:
    """The page's text as a person reads it: tags dropped, entities kept escaped, spaces joined."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def make_project(root: Path, *, edited: bool = False) -> Path:
    """A project as the service sees one: policies/ (with its tests), examples/customers.jsonl."""
    shutil.copytree(POLICIES, root / "policies")
    (root / "examples").mkdir()
    shutil.copy(EXAMPLES, root / "examples" / "customers.jsonl")
    if edited:  # the top band widened from the top 20% to the top 30%
        shutil.copytree(POLICIES, root / "edited", ignore=shutil.ignore_patterns("tests"))
        path = root / "edited" / "tiering.yaml"
        text = path.read_text(encoding="utf-8")
        text = text.replace("value: high, from: 80, to: 100", "value: high, from: 70, to: 100")
        text = text.replace("value: medium, from: 50, to: 80", "value: medium, from: 50, to: 70")
        path.write_text(text, encoding="utf-8")
    return root


@dataclass
class Served:
    client: TestClient
    service: Service
    root: Path
    ids: dict[str, list[str]]  # decision ids by domain
    by_customer: dict[str, list[str]]


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    return Engine(POLICIES).build_snapshot(lines(EXAMPLES, 2000), now=NOW)


def decide_some(engine: Engine) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    customers = lines(EXAMPLES, 45)
    hostile = {**customers[0], "id": HOSTILE}
    ids: dict[str, list[str]] = {}
    by_customer: dict[str, list[str]] = {}

    def keep(domain: str, facts: dict[str, Any]) -> None:
        decision = engine.evaluate(domain, facts, now=NOW)
        assert decision.record_id is not None
        ids.setdefault(domain, []).append(decision.record_id)
        by_customer.setdefault(str(decision.subject), []).append(decision.record_id)

    for c in [*customers[:3], customers[41], hostile]:  # customers[41] is C000042
        keep("tiering", c)
    keep("classification", customers[41])
    for request in lines(REQUESTS / "access.jsonl", 6):
        keep("access", request)
    for domain in ("retention", "escalation"):
        keep(domain, lines(REQUESTS / f"{domain}.jsonl", 1)[0])
    return ids, by_customer


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, snapshot: Snapshot) -> Iterator[Served]:
    root = make_project(tmp_path_factory.mktemp("project"), edited=True)
    store = open_store(f"sqlite:///{root / 'log.db'}")
    protector = Protector(store, load_key(root / "log.key", create=True))
    engine = Engine(root / "policies", snapshot=snapshot, log=TimedLog(store, protector))
    service = Service(engine, store=store, protector=protector, watch_interval=None)
    ids, by_customer = decide_some(engine)
    with TestClient(create_app(service), base_url=BASE) as client:
        yield Served(client, service, root, ids, by_customer)


def get(served: Served, url: str, status: int = 200, **params: str) -> str:
    response = served.client.get(url, params=params)
    assert response.status_code == status, (url, response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("text/html")
    return response.text


def logged(served: Served) -> list[dict[str, Any]]:
    assert served.service.store is not None
    return [body for _, _, body in records(served.service.store)]


class Fields(HTMLParser):
    """The form fields of a page and the labels that name them."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: list[str] = []
        self.labelled: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in ("input", "select", "textarea") and a.get("type") != "hidden":
            self.fields.append(a.get("id") or "")
        if tag == "label" and a.get("for"):
            self.labelled.add(a["for"] or "")


# -- every page ---------------------------------------------------------------------------------


def test_every_page_is_html_with_a_label_on_every_field(served: Served) -> None:
    record = served.ids["access"][0]
    urls = ["/ui/", "/ui/tests", "/ui/log", f"/ui/log/{record}", "/ui/log/verify", "/ui/impact", "/ui/dashboard"]
    urls += ["/ui/try", "/ui/dashboard/trends"]
    urls += [f"/ui/policies/{d}" for d in served.service.engine.domains]
    for url in urls:
        html = get(served, url)
        assert '<html lang="en">' in html and '<main id="main"' in html and 'name="viewport"' in html
        parsed = Fields()
        parsed.feed(html)
        assert all(f and f in parsed.labelled for f in parsed.fields), (url, parsed.fields, parsed.labelled)
    css = served.client.get("/ui/static/style.css")
    assert css.status_code == 200 and "@media (max-width" in css.text  # the narrow-window layout


def test_unknown_pages_and_ids_are_404_pages(served: Served) -> None:
    assert "no page <code>/ui/nothing-here</code>" in get(served, "/ui/nothing-here", 404)
    page = get(served, "/ui/policies/tierin", 404)
    assert "C060" in page and "tiering" in page
    page = get(served, "/ui/log/" + "f" * 64, 404)
    assert "C066" in page and "no record" in page
    assert "C066" in get(served, "/ui/log/abc", 404)  # under 8 characters


# -- overview and policies -----------------------------------------------------------------------


def test_the_overview_lists_the_bundle_and_each_domain_with_its_rule_count(served: Served) -> None:
    engine = served.service.engine
    page = get(served, "/ui/")
    assert engine.bundle_version in page
    assert served.service.snapshot_id is not None and served.service.snapshot_id[:24] in page
    for kind, cp in engine.bundle.policies.items():
        row = re.search(rf'<a href="/ui/policies/{kind}">{kind}</a></th>(.*?)</tr>', page, re.S)
        assert row is not None, kind
        assert f'<td class="num">{len(enumerate_rules(cp).rules)}</td>' in row.group(1)
        assert str(cp.policy.metadata.get("owner")) in row.group(1)


@pytest.mark.parametrize("domain", ["tiering", "access", "classification", "retention", "escalation"])
def test_a_policy_page_lists_each_rule_at_its_line_and_numbers_the_source(served: Served, domain: str) -> None:
    cp = served.service.engine.bundle.policies[domain]
    page = get(served, f"/ui/policies/{domain}")
    rules = enumerate_rules(cp).rules
    assert rules
    for rule in rules:
        assert f'id="rule-{rule.id}"' in page and f'href="#L{rule.line}"' in page
    source = Path(cp.policy.path).read_text(encoding="utf-8").splitlines()
    assert f'<tr id="L{len(source)}"' in page and f'<tr id="L{len(source) + 1}"' not in page


def test_a_rule_is_said_in_words_with_its_message_and_clause(served: Served) -> None:
    page = text_of(get(served, "/ui/policies/tiering"))
    assert "from the 80th percentile" in page and "to the 100th percentile" in page
    assert "top 20% of customers by lifetime value (source)" in page
    assert "compliance-office" in page


def test_lint_findings_show_on_their_line_with_the_hint(served: Served) -> None:
    page = get(served, "/ui/policies/tiering")
    row = re.search(r'<tr id="L15" class="flagged">(.*?)</tr>', page, re.S)
    assert row is not None
    assert "L030" in row.group(1) and "<code>industry</code>" in row.group(1)
    assert "help: use it in a condition or score" in row.group(1)
    assert '<tr id="L16">' in page  # a line without a finding is not flagged


def test_a_seeded_mistake_shows_on_its_line_and_its_rule_as_uncovered(tmp_path: Path, snapshot: Snapshot) -> None:
    root = make_project(tmp_path)
    path = root / "policies" / "tiering.yaml"
    text = path.read_text(encoding="utf-8")
    mature = '      - id: lifecycle-mature\n        when: "true"\n        then: mature\n'
    seeded = "      - id: lifecycle-never\n        when: customer.purchases_12m > 5\n        then: growth\n"
    assert mature in text
    text = text.replace(mature + "        message: established customer still buying\n", mature + seeded, 1)
    path.write_text(text, encoding="utf-8")
    line = text.splitlines().index("      - id: lifecycle-never") + 1
    (root / "policies" / "tests" / "seeded.yaml").write_text(
        "now: 2025-06-30T00:00:00Z\ncustomers: ../../examples/customers.jsonl\ncases:\n"
        "  - name: a seeded failure\n    domain: tiering\n    customer: C000001\n"
        "    expect: {value_tier: minimal}\n",
        encoding="utf-8",
    )
    service = Service(Engine(root / "policies", snapshot=snapshot), watch_interval=None)
    with TestClient(create_app(service), base_url=BASE) as client:
        page = client.get("/ui/policies/tiering").text
        row = re.search(rf'<tr id="L{line}" class="flagged">(.*?)</tr>', page, re.S)
        assert row is not None
        assert "L002" in row.group(1) and "<code>lifecycle-never</code> can never fire" in row.group(1)
        assert "help: move <code>lifecycle-never</code> above" in row.group(1)

        tests = client.get("/ui/tests").text
        summary = re.search(r'<p class="summary bad" role="status">\s*(\d+) passed, (\d+) failed', tests)
        assert summary is not None and summary.group(2) == "1"
        assert "value_tier: expected &#34;minimal&#34;, got &#34;high&#34;" in tests
        assert "[value-high] top 20% of customers by lifetime value" in tests  # the rules that decided
        uncovered = re.search(r'<ul class="uncovered">(.*?)</ul>', tests, re.S)
        assert uncovered is not None and "<code>lifecycle-never</code>" in uncovered.group(1)
        assert f"tiering.yaml:{line}" in uncovered.group(1)
        failed_only = client.get("/ui/tests", params={"status": "failed"}).text
        assert failed_only.count('<span class="status failed">') == 1 and "a seeded failure" in failed_only


# -- tests ---------------------------------------------------------------------------------------------


def test_the_tests_page_runs_the_policy_tests_and_shows_coverage(served: Served) -> None:
    page = get(served, "/ui/tests")
    summary = re.search(r'<p class="summary good" role="status">\s*(\d+) passed, 0 failed', page)
    assert summary is not None and int(summary.group(1)) > 50
    cases = len(re.findall(r'<span class="status passed">', page))
    assert cases == int(summary.group(1))
    for domain in served.service.engine.domains:
        assert f'<a href="/ui/policies/{domain}">{domain}</a>' in page
    assert "Every rule is made to fire by some case." in page
    only = get(served, "/ui/tests", domain="access")
    shown = re.findall(r'<tr class="passed">\s*<th scope="row">.*?</th>\s*<td>(\w+)</td>', only, re.S)
    assert shown and set(shown) == {"access"}


# -- the log ----------------------------------------------------------------------------------------


def test_an_auditor_finds_a_customers_decisions_by_id_and_opens_one(served: Served) -> None:
    page = get(served, "/ui/log", customer="C000042")
    found = re.findall(r'<a href="/ui/log/([0-9a-f]{64})">', page)
    assert found == served.by_customer["C000042"]
    assert f"{len(found)} decision(s)" in page
    opened = text_of(get(served, f"/ui/log/{found[0]}"))
    assert "C000042" in opened and found[0] in opened
    body = next(b for b in logged(served) if b["subject"] == "C000042" and b["domain"] == "tiering")
    for rule_id, _step in body["fired"]:
        assert rule_id in opened


def test_the_search_keeps_to_domain_rule_and_outcome_as_the_log_says(served: Served) -> None:
    bodies = logged(served)
    page = get(served, "/ui/log", domain="access", limit="1000")
    assert len(re.findall(r'<a href="/ui/log/[0-9a-f]{64}">', page)) == len(served.ids["access"])
    rule = bodies[0]["fired"][0][0]
    page = get(served, "/ui/log", rule=rule)
    assert len(re.findall(r'<a href="/ui/log/[0-9a-f]{64}">', page)) == sum(
        rule in [f[0] for f in b["fired"]] for b in bodies
    )
    page = get(served, "/ui/log", domain="tiering", outcome="value_tier=high")
    want = sum(b["domain"] == "tiering" and b["outputs"]["value_tier"] == "high" for b in bodies)
    assert len(re.findall(r'<a href="/ui/log/[0-9a-f]{64}">', page)) == want > 0
    bad = get(served, "/ui/log", 422, since="yesterday")
    assert "C063" in bad and "<code>since</code> is not a timestamp" in bad


def test_a_decision_shows_outputs_reasons_rule_text_and_sealed_values_as_sealed(served: Served) -> None:
    record_id = served.ids["access"][0]
    body = next(b for b in logged(served) if b["domain"] == "access")
    request = lines(REQUESTS / "access.jsonl", 1)[0]
    page = get(served, f"/ui/log/{record_id}")
    words = text_of(page)
    assert body["outputs"]["effect"] in words
    for rule_id, _ in body["fired"]:
        assert f"<code>{rule_id}</code>" in page
    assert 'class="rule-text"' in page and "id: " + body["fired"][0][0] in words  # the rule as it was written
    assert '<span class="sealed">sealed</span>' in page
    for value in request["resource"]["record"].values():  # every field of the record is sealed in the log
        assert str(value) not in page
    count = len(logged(served))
    seq = next(i for i, b in enumerate(logged(served), 1) if b is not None and b["domain"] == "access")
    assert f"record {seq} of {count}" in words


def tokens() -> AuthConfig:
    return AuthConfig(
        Tokens(
            [
                Token("auditor", frozenset({"log:read"}), digest("auditor-secret")),
                Token("officer", frozenset({"log:read", "unseal"}), digest("officer-secret")),
                Token("backend", frozenset({"decide"}), digest("backend-secret")),
            ]
        )
    )


def test_an_auditor_token_cannot_see_sealed_values_and_one_allowed_to_unseal_can(served: Served) -> None:
    record_id = served.ids["access"][0]
    request = lines(REQUESTS / "access.jsonl", 1)[0]
    secret = str(request["resource"]["record"]["bank_account"])
    with TestClient(create_app(served.service, auth=tokens()), base_url=BASE) as client:
        url = f"/ui/log/{record_id}"
        as_auditor = client.get(url, headers={"Authorization": "Bearer auditor-secret"})
        assert as_auditor.status_code == 200 and secret not in as_auditor.text and "sealed" in as_auditor.text
        as_officer = client.get(url, headers={"Authorization": "Bearer officer-secret"})
        assert as_officer.status_code == 200 and secret in as_officer.text
        assert '<span class="sealed">unsealed</span>' in as_officer.text
        backend = client.get("/ui/log", headers={"Authorization": "Bearer backend-secret"})
        assert backend.status_code == 403 and "log:read" in backend.text
        assert client.get("/ui/").status_code == 401  # no token


def test_a_hostile_customer_id_is_escaped_everywhere(served: Served) -> None:
    for url, params in (("/ui/log", {"customer": HOSTILE}), ("/ui/log", {}), ("/ui/dashboard", {})):
        page = get(served, url, **params)
        assert "<script>" not in page
    page = get(served, "/ui/log", customer=HOSTILE)
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    (record_id,) = served.by_customer[HOSTILE]
    page = get(served, f"/ui/log/{record_id}")
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_the_chain_page_says_the_log_holds_and_shows_the_latest_checkpoint(served: Served, tmp_path: Path) -> None:
    count = len(logged(served))
    page = text_of(get(served, "/ui/log/verify"))
    assert f"Intact: {count} record(s)" in page
    assert "No checkpoints file is configured" in page

    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import JSONResponse

    from engine.serve.auth import AuthMiddleware
    from engine.web import routes

    key = load_signing_key(tmp_path / "signing.key", create=True)
    (tmp_path / "signing.pem").write_bytes(public_pem(key))
    store = served.service.store
    assert store is not None
    heads = [json.loads(data) for _, data in store.read()]
    checkpoints = tmp_path / "checkpoints.jsonl"
    for n in (2, count):
        append_line(checkpoints, sign(key, n, heads[n - 1]["hash"], NOW))
    app = Starlette(
        routes=routes(served.service, checkpoints=checkpoints, public_keys=[tmp_path / "signing.pem"]),
        middleware=[Middleware(AuthMiddleware, config=AuthConfig(), reject=lambda e: JSONResponse({}, 500))],
    )
    with TestClient(app, base_url=BASE) as client:
        page = text_of(client.get("/ui/log/verify").text)
    assert "2 of 2 checkpoint(s) hold" in page
    assert f"record {count}, signed" in page and heads[count - 1]["hash"] in page


# -- impact ----------------------------------------------------------------------------------------


def test_a_changed_band_shows_the_count_of_changed_decisions_and_the_before_after_chart(
    served: Served, snapshot: Snapshot
) -> None:
    root = served.root
    version = served.service.engine.bundle_version
    page = get(served, "/ui/impact", edited="edited", facts="examples/customers.jsonl", now="2025-06-30")
    customers = lines(EXAMPLES, 2000)
    old = Engine(root / "policies", snapshot=snapshot)
    new = Engine(root / "edited", snapshot=snapshot)
    changed = 0
    before: Counter[str] = Counter()
    after: Counter[str] = Counter()
    for c in customers:
        a, b = old.evaluate("tiering", c, now=NOW), new.evaluate("tiering", c, now=NOW)
        changed += a.outputs != b.outputs
        before[a.outputs["value_tier"]] += 1
        after[b.outputs["value_tier"]] += 1
    assert changed > 0
    words = text_of(page)
    assert f"{changed} of {len(customers)} tiering decision(s) change" in words
    assert "from the 80th percentile to the 70th percentile" in words
    assert "<title" in page and "tiering: value_tier before and after</title>" in page
    for tier in ("high", "medium", "low", "minimal"):
        assert (
            f'<th scope="row">{tier}</th><td class="num">{before[tier]}</td><td class="num">{after[tier]}</td>' in page
        )
    assert served.service.engine.bundle_version == version  # read-only: nothing swapped in


def test_the_impact_form_refuses_paths_outside_the_project(served: Served) -> None:
    assert "C090" in get(served, "/ui/impact", 403, edited="/etc")
    assert "C090" in get(served, "/ui/impact", 403, edited="../../..")
    link = served.root / "outside"
    if not link.exists():
        link.symlink_to("/tmp", target_is_directory=True)
    assert "C090" in get(served, "/ui/impact", 403, edited="outside")  # a link out of the project is followed
    assert "C091" in get(served, "/ui/impact", 422, edited="examples/customers.jsonl")
    assert "C090" in get(served, "/ui/impact", 403, edited="edited", facts="/etc/passwd", now="2025-06-30")
    form = get(served, "/ui/impact")
    assert 'for="i-edited"' in form and "Compare" in form


# -- dashboard ----------------------------------------------------------------------------------------


def test_the_dashboard_counts_what_the_log_holds(served: Served) -> None:
    bodies = logged(served)
    page = get(served, "/ui/dashboard")
    tiers = Counter(b["outputs"]["value_tier"] for b in bodies if b["domain"] == "tiering")
    desc = re.search(r"<desc[^>]*>([^<]*)</desc>", page[page.index("tiering: value_tier") - 400 :])
    assert desc is not None
    for tier, n in tiers.items():
        assert f"{tier}: decisions {n}" in desc.group(1)
    access = [b for b in bodies if b["domain"] == "access"]
    assert f'access <span class="muted">({len(access)} decision(s))' in page
    purposes = Counter((b["facts"]["purpose"], b["outputs"]["effect"]) for b in access)
    table = re.search(r"access: outcome by <code>purpose</code>(.*?)</table>", page, re.S)
    assert table is not None
    for (purpose, effect), n in purposes.items():
        assert f'<th scope="row">{purpose}</th>' in table.group(1)
        assert n >= 1 and effect in table.group(1)
    only = get(served, "/ui/dashboard", domain="retention")
    assert "retention <span" in only and "access <span" not in only


# -- a real browser ------------------------------------------------------------------------------------


@contextlib.contextmanager
def uvicorn_serving(app: Any) -> Iterator[str]:
    """``app`` served by uvicorn on a free loopback port, in a thread, for the browser."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def real_server(served: Served) -> Iterator[str]:
    with uvicorn_serving(create_app(served.service)) as url:
        yield url


CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


# CI installs Debian's chromium and sets CHARTER_REQUIRE_BROWSER=1: there the browser test runs or fails
@pytest.mark.skipif(
    not CHROMIUM.exists() and not os.environ.get("CHARTER_REQUIRE_BROWSER"),
    reason="no /usr/bin/chromium: install Debian's `chromium` package",
)
def test_in_a_browser_an_auditor_reaches_a_decision_by_keyboard(
    served: Served, real_server: str, tmp_path: Path
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the test extra)")
    shots = Path(os.environ.get("CHARTER_WEB_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    wanted = served.by_customer["C000042"][0]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 800})

            def tab_to(test: str, limit: int = 60) -> None:
                for _ in range(limit):
                    page.keyboard.press("Tab")
                    if page.evaluate(f"(() => {{ const e = document.activeElement; return {test}; }})()"):
                        return
                raise AssertionError(f"no element reached by Tab where {test}")

            page.goto(real_server + "/ui/")
            page.screenshot(path=str(shots / "overview.png"), full_page=True)
            tab_to("e.textContent.trim() === 'Decision log'")
            page.keyboard.press("Enter")
            page.wait_for_url(re.compile(r"/ui/log$"))
            tab_to("e.id === 'q-customer'")
            page.keyboard.type("C000042")
            page.keyboard.press("Enter")
            page.wait_for_url(re.compile(r"/ui/log\?customer=C000042"))
            page.screenshot(path=str(shots / "log-search.png"), full_page=True)
            tab_to(f"e.getAttribute('href') === '/ui/log/{wanted}'")
            page.keyboard.press("Enter")
            page.wait_for_url(re.compile(wanted))
            text = page.inner_text("main")
            assert "C000042" in text and "Reasons" in text and "Chain position" in text
            assert page.title().startswith("Decision " + wanted[:12])
            page.screenshot(path=str(shots / "decision.png"), full_page=True)
            others = {
                "policy": "/ui/policies/tiering",
                "tests": "/ui/tests",
                "verify": "/ui/log/verify",
                "impact": "/ui/impact?edited=edited&facts=examples/customers.jsonl&now=2025-06-30",
                "dashboard": "/ui/dashboard",
            }
            for name, url in others.items():
                page.goto(real_server + url)
                assert page.locator("h1").count() == 1
                page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
            # an officer tries a denied access request and reads what would change it
            denied = next(r for r in lines(REQUESTS / "access.jsonl", 50) if r["action"] == "export")
            page.goto(real_server + "/ui/try")
            page.select_option("#t-domain", "access")
            tab_to("e.id === 't-facts'")
            page.keyboard.insert_text(json.dumps(denied))
            tab_to("e.textContent.trim() === 'Decide'")
            page.keyboard.press("Enter")
            page.wait_for_selector("#why-not")
            text = page.inner_text("main")
            assert "What would change it" in text and "Reasons" in text and "Trace" in text
            page.screenshot(path=str(shots / "try.png"), full_page=True)
            # an officer uploads the edited directory from the browser and sees the changed count
            page.goto(real_server + "/ui/impact")
            page.set_input_files("#u-dir", str(served.root / "edited"))
            page.fill("#u-facts", "examples/customers.jsonl")
            page.fill("#u-now", "2025-06-30")
            page.check("#u-replay")
            tab_to("e.textContent.trim() === 'Upload and compare'")
            page.keyboard.press("Enter")
            page.wait_for_selector("#impact")
            text = page.inner_text("main")
            assert "tiering decision(s) change" in text and "Uploaded from edited" in text
            assert "needs a token with log:read and unseal" in text  # no token may unseal here
            page.screenshot(path=str(shots / "impact-upload.png"), full_page=True)
            page.goto(real_server + "/ui/dashboard/trends")
            assert page.locator("h1").count() == 1 and page.locator("svg.chart").count() >= 3
            page.screenshot(path=str(shots / "trends.png"), full_page=True)
            # replay jobs: started by keyboard, followed until the report shows
            page.goto(real_server + "/ui/log/replay")
            page.select_option("select[name=domain]", "tiering")
            tab_to("e.textContent.trim() === 'Start the replay'")
            page.keyboard.press("Enter")
            page.wait_for_function("document.querySelector('main').innerText.includes('reproduced')", timeout=60_000)
            assert "diverged" in page.inner_text("main")
            page.screenshot(path=str(shots / "replay.png"), full_page=True)
            # with tokens: an officer allowed to unseal reads what would change a logged decision
            with uvicorn_serving(create_app(served.service, auth=tokens())) as secured:
                officer = browser.new_page(
                    viewport={"width": 1100, "height": 800},
                    extra_http_headers={"Authorization": "Bearer officer-secret"},
                )
                officer.goto(f"{secured}/ui/log/{wanted}#replayed")
                text = officer.inner_text("main")
                assert "What would change it" in text and "would be" in text and "unsealed" in text
                officer.screenshot(path=str(shots / "decision-why-not.png"), full_page=True)
                auditor = browser.new_page(extra_http_headers={"Authorization": "Bearer auditor-secret"})
                auditor.goto(f"{secured}/ui/log/{wanted}")
                text = auditor.inner_text("main")
                assert "What would change it" not in text and "allowed to unseal" in text
            narrow = browser.new_page(viewport={"width": 360, "height": 740})
            narrow.goto(real_server + "/ui/log?customer=C000042")
            overflow = narrow.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            narrow.screenshot(path=str(shots / "log-narrow.png"), full_page=True)
            assert overflow <= 1  # the narrow layout: no sideways scrolling
            for url in ("/ui/try", "/ui/dashboard/trends", "/ui/impact"):
                narrow.goto(real_server + url)
                assert narrow.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 1, url
        finally:
            browser.close()
    assert {f.name for f in shots.iterdir()} >= {
        "overview.png",
        "decision.png",
        "impact.png",
        "log-narrow.png",
        "try.png",
    }
