"""The host application's API: load a policy directory, decide, reload atomically.

::

    from datetime import datetime, timezone
    from engine import Engine

    engine = Engine("policies", snapshot=snapshot)
    decision = engine.evaluate("tiering", facts, now=datetime(2025, 6, 30, tzinfo=timezone.utc))
    decision.outputs["value_tier"], decision.fired_ids

Thread safety: the engine's whole state (bundle, snapshot, bound programs) is one
immutable object swapped in a single assignment. An evaluation reads it once, so it sees
either the old or the new policies, never a mix; a reload that fails raises and leaves the
old state serving.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from engine.audit.log import DecisionLog
from engine.core.bundle import Bundle, BundleCache, build_bundle_cached
from engine.core.decision import Decision
from engine.core.evaluate import Program
from engine.core.state import Loaded, decide
from engine.errors import EvaluationError, FactErrors, SnapshotError
from engine.plugins import Registry, build_registry
from engine.population import ScoreCuts, ScoreValues, Snapshot

# Snapshots keep every whole percentile besides those the policy needs, so a what-if replay
# of an edited band (`from: 75`) against logged decisions finds its cut point.
WHOLE_PERCENTILES = frozenset(float(p) for p in range(1, 100))


Item = tuple[Decision, Mapping[str, Any], Program, Program | None]  # what the log records per decision


class Engine:
    """Charter's engine over one policy set. Safe to share between threads."""

    def __init__(
        self,
        policies: str | Path | Sequence[str | Path] = "policies",
        *,
        snapshot: Snapshot | None = None,
        plugins: Sequence[object] = (),
        registry: Registry | None = None,
        log: DecisionLog | None = None,
        log_batch: int = 256,
    ) -> None:
        """``log``: record every decision there (``engine.audit.DecisionLog``). A batch is
        recorded ``log_batch`` decisions at a time, and yields them only once recorded."""
        self.log = log
        self.log_batch = max(1, log_batch)
        self.snapshot_chunk = 1_000_000  # scores held in memory per ranked score while building a snapshot
        self._paths = [policies] if isinstance(policies, (str, Path)) else list(policies)
        self.registry = registry if registry is not None else build_registry(plugins)
        self._lock = threading.Lock()
        self._cache: BundleCache = {}
        self._states: dict[tuple[str, tuple[str, ...], str | None], Loaded] = {}
        self._state = Loaded.build(build_bundle_cached(self._paths, self.registry, self._cache), snapshot)

    # -- what is loaded ----------------------------------------------------------------------

    @property
    def bundle_version(self) -> str:
        return self._state.bundle.version

    @property
    def bundle(self) -> Bundle:
        return self._state.bundle

    @property
    def snapshot(self) -> Snapshot | None:
        return self._state.snapshot

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(self._state.programs)

    def program(self, domain: str, now: datetime | None = None) -> Program:
        """The compiled policy of ``domain`` as currently loaded: in force at ``now``, or
        (without ``now``) from the latest effective date in the files on."""
        state = self._state
        return state.program(state.period(now) if now is not None else state.periods[-1], domain, now)

    def ranking_domain(self, domain: str) -> str | None:
        """``domain``, or a domain it uses (directly or not), whose policy ranks customers
        against a population snapshot; None when none does."""
        program = self.program(domain)
        if program.needs_snapshot:
            return domain
        return next((d for name in program.policy.uses if (d := self.ranking_domain(name))), None)

    def ranking_domains(self) -> tuple[str, ...]:
        """The loaded domains whose own policy ranks customers against a population snapshot."""
        return tuple(d for d in self.domains if self.program(d).needs_snapshot)

    def default_ranking_domain(self) -> str:
        """The one loaded domain whose policy ranks customers: what a snapshot is built for
        when no domain is named. Raises ``SnapshotError`` when there is none or several."""
        found = self.ranking_domains()
        if len(found) != 1:
            raise SnapshotError(
                "no loaded policy ranks customers against a population"
                if not found
                else "several loaded policies rank customers: " + ", ".join(f"`{d}`" for d in found),
                code="S010",
                hint="name the domain to build the snapshot for" if found else "a snapshot is for a policy with bands",
            )
        return found[0]

    def default_domain(self) -> str:
        """The domain a command decides in when none is named: the only one loaded, or else the
        one whose policy ranks customers. Raises ``EvaluationError`` when that does not decide."""
        if len(self.domains) == 1:
            return self.domains[0]
        ranking = self.ranking_domains()
        if len(ranking) != 1:
            raise EvaluationError(
                "name the policy domain to decide in",
                code="V005",
                hint="pass `--domain` with one of " + ", ".join(f"`{d}`" for d in sorted(self.domains)),
            )
        return ranking[0]

    # -- deciding ----------------------------------------------------------------------------

    def evaluate(self, domain: str, facts: Mapping[str, Any], *, now: datetime, explain: bool = False) -> Decision:
        """Decide for one customer. Raises ``FactErrors`` for bad facts, ``EvaluationError`` otherwise.

        With a log, the decision is durably recorded before it is returned (``record_id``).
        """
        state = self._state
        decision, period, program, shadow = state.decide(domain, facts, now, explain=explain)
        if self.log is not None:
            self.log.record([(decision, facts, program, shadow)], state.bundle, self.registry, period.classifier)
        return decision

    def evaluate_batch(
        self,
        domain: str,
        customers: Iterable[Mapping[str, Any]],
        *,
        now: datetime,
        explain: bool = False,
        errors: Literal["raise", "yield"] = "yield",
    ) -> Iterator[Decision | FactErrors]:
        """Decide for each customer in turn, streaming: one in, one out, nothing held.

        The whole batch uses the policies loaded when it started, even if a reload happens
        meanwhile. With ``errors="yield"`` a customer with bad facts yields its
        ``FactErrors`` in place of a decision; with ``"raise"`` it stops the batch. An
        ``EvaluationError`` (a decision that cannot be made, a plugin's failure included)
        stops the batch; with a log, the decisions made before it are recorded and yielded
        first.
        """
        state = self._state
        period = state.period(now)
        program = state.program(period, domain, now)
        shadow = period.shadow(domain)
        log = self.log
        if log is None:
            evaluate = program.evaluate
            for facts in customers:
                try:
                    yield (
                        evaluate(facts, now, explain=explain)
                        if shadow is None
                        else decide(program, shadow, facts, now, explain)
                    )
                except FactErrors as exc:
                    if errors == "raise":
                        raise
                    yield exc
            return
        pending: list[Decision | FactErrors] = []
        items: list[Item] = []
        classification = period.classifier
        for facts in customers:
            try:
                decision = decide(program, shadow, facts, now, explain)
            except (FactErrors, EvaluationError) as exc:
                if errors == "yield" and isinstance(exc, FactErrors):
                    pending.append(exc)
                    continue
                log.record(items, state.bundle, self.registry, classification)  # what was decided is kept
                yield from pending
                raise
            pending.append(decision)
            items.append((decision, facts, program, shadow))
            if len(pending) >= self.log_batch:
                log.record(items, state.bundle, self.registry, classification)  # durable before yielded
                yield from pending
                pending, items = [], []
        log.record(items, state.bundle, self.registry, classification)
        yield from pending

    # -- changing ----------------------------------------------------------------------------

    def reload(self, policies: str | Path | Sequence[str | Path] | None = None) -> str:
        """Load the policies again (or others) and swap them in whole. Returns the new version.

        Raises ``PolicyErrors`` when any file is wrong; the old policies keep serving.
        """
        paths = (
            self._paths if policies is None else ([policies] if isinstance(policies, (str, Path)) else list(policies))
        )
        with self._lock:  # one reload at a time; evaluations never wait for it
            bundle = build_bundle_cached(paths, self.registry, self._cache)
            key = (bundle.version, bundle.files, self._state.snapshot.id if self._state.snapshot else None)
            state = self._states.get(key)
            if state is None or state.bundle is not bundle:
                state = Loaded.build(bundle, self._state.snapshot)
                if len(self._states) >= 16:
                    self._states.pop(next(iter(self._states)))
                self._states[key] = state
            self._state = state
            self._paths = paths
        return bundle.version

    def use_snapshot(self, snapshot: Snapshot | None) -> None:
        """Rank customers against another population snapshot from now on."""
        with self._lock:
            self._state = Loaded.build(self._state.bundle, snapshot)

    def build_snapshot(
        self, customers: Iterable[Mapping[str, Any]], *, now: datetime, domain: str | None = None
    ) -> Snapshot:
        """Compute a population snapshot for ``domain``'s bands from a stream of customers
        (by default the one loaded domain whose policy ranks customers, ``ranking_domains``).

        Customers whose facts are bad, or whose score cannot be computed, are skipped and
        counted in ``Snapshot.skipped``. ``now`` is the time scores are computed at (and is
        recorded in the snapshot). The cut points are exact; memory is bounded by
        ``snapshot_chunk`` scores (8 bytes each) per ranked score, the rest spilled to sorted
        temporary files (``engine.population.ScoreValues``).
        """
        program = self.program(domain if domain is not None else self.default_ranking_domain())
        compiled = program.compiled
        needed = compiled.policy.percentiles()
        ranking = compiled.ranking
        for name in needed:
            if name in ranking:
                raise SnapshotError(
                    f"bands cannot rank by score `{name}`, which itself ranks against the population",
                    code="S009",
                    hint="rank by a score computed from the customer's own facts",
                )
        fns = [(name, fn) for name, fn in compiled.scores if name in needed]
        values: dict[str, ScoreValues] = {name: ScoreValues(self.snapshot_chunk) for name in needed}
        metrics: dict[str, dict[str, ScoreValues]] = {name: {} for name in ranking}
        skipped = counted = 0
        for facts in customers:
            try:
                customer = program.check(facts)
                env = {"customer": customer, "now": now}
                row = [(name, float(fn(env))) for name, fn in fns]
                measured = [
                    (name, spec.metrics(customer, now)) for name, spec in ranking.items() if spec.metrics is not None
                ]
            except Exception:  # bad facts or an unscorable customer: counted, never fatal
                skipped += 1
                continue
            counted += 1
            for name, value in row:
                values[name].append(value)
            for name, measures in measured:
                for metric, value in measures.items():
                    metrics[name].setdefault(metric, ScoreValues(self.snapshot_chunk)).append(float(value))
        try:
            cuts = {
                name: ScoreCuts(
                    name,
                    compiled.score_digests[name],
                    len(values[name]),
                    values[name].cut_points(tuple(sorted(set(needed[name]) | WHOLE_PERCENTILES))),
                )
                for name in needed
            }
            for name, spec in ranking.items():
                cuts[name] = ScoreCuts(
                    name,
                    compiled.score_digests[name],
                    counted,
                    {},
                    {m: kept.cut_points(spec.percentiles) for m, kept in metrics[name].items()},
                )
        finally:
            for kept in [*values.values(), *(k for by in metrics.values() for k in by.values())]:
                kept.close()
        stamp = now.isoformat().replace("+00:00", "Z")
        return Snapshot(compiled.policy.id, cuts, skipped, as_of=stamp)
