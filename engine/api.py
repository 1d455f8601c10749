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

Files being written (docs/deploying.md): a policy directory with a ``charter.manifest``
(``sha256sum`` lines, written last and renamed into place) loads only when every policy file
in it is listed and matches its hash. Without one, a reload reads a file once it has seen it
unchanged for ``settle`` seconds (waiting, and refusing it if it keeps changing), and reads
again what changed while it read. ``Engine.watch`` reloads when the files change and then
stay quiet.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from engine.core.bundle import Bundle, BundleCache, build_bundle_cached
from engine.core.decision import Decision
from engine.core.evaluate import Program
from engine.core.sources import DEFAULT_SETTLE, QuietFiles, Stat, listing, read_policies
from engine.core.state import Loaded, decide
from engine.errors import EvaluationError, FactErrors, PolicyError, SnapshotError
from engine.plugins import Registry, build_registry
from engine.population import ScoreCuts, ScoreValues, Snapshot

if TYPE_CHECKING:  # the log and the approvals bring cryptography: imported when used
    from engine.audit.approvals import ApprovalPolicy
    from engine.audit.log import DecisionLog

# Snapshots keep every whole percentile besides those the policy needs, so a what-if replay
# of an edited band (`from: 75`) against logged decisions finds its cut point.
WHOLE_PERCENTILES = frozenset(float(p) for p in range(1, 100))


Item = tuple[Decision, Mapping[str, Any], Program, Program | None]  # what the log records per decision

_LOG = logging.getLogger("charter.reload")


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
        settle: float = DEFAULT_SETTLE,
        approvals: ApprovalPolicy | None = None,
    ) -> None:
        """``log``: record every decision there (``engine.audit.DecisionLog``). A batch is
        recorded ``log_batch`` decisions at a time, and yields them only once recorded.

        ``settle``: a reload of a directory without a manifest reads a file once it has seen it
        unchanged that many seconds, waiting if need be (0: only checks that nothing changed
        while it read). The first load does not wait; like a reload it keeps to a manifest,
        and reads again what changed while it read.

        ``approvals``: load and reload only a bundle that enough trusted approvers signed
        (``engine.audit.approvals``); one that is not approved raises ``PolicyErrors`` (P030)
        and, on reload, leaves the old policies serving."""
        self.settle = settle
        self.approvals = approvals
        self._approved: dict[tuple[str, tuple[str, ...]], Bundle] = {}
        self.log = log
        self.log_batch = max(1, log_batch)
        self.snapshot_chunk = 1_000_000  # scores held in memory per ranked score while building a snapshot
        self._paths = [policies] if isinstance(policies, (str, Path)) else list(policies)
        self.registry = registry if registry is not None else build_registry(plugins)
        self._lock = threading.Lock()
        self._cache: BundleCache = {}
        self._states: dict[tuple[str, tuple[str, ...], str | None], Loaded] = {}
        self._quiet = QuietFiles()  # what the loads (and a watcher) saw of the files, and since when
        sources = read_policies(self._paths, quiet=self._quiet)
        bundle = self._approve(build_bundle_cached(self._paths, self.registry, self._cache, sources), self._paths)
        self._state = Loaded.build(bundle, snapshot)

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

    def release(self, decision: Decision, request: Mapping[str, Any], *, hash_key: bytes | None = None) -> Any:
        """What the requester may see of ``request``'s data under ``decision`` (its domain's
        ``Domain.release``): for access, the record with the fields it denies left out and the
        masked ones masked (``hash`` masks need ``hash_key``, else they show as ``****``).
        ``EvaluationError`` (V010) for a domain that releases no data."""
        domain = self.registry.domains.get(decision.domain)
        if domain is None or domain.release is None:
            releasing = sorted(k for k, d in self.registry.domains.items() if d.release is not None)
            raise EvaluationError(
                f"`{decision.domain}` decisions release no data",
                code="V010",
                hint="decisions that release a record: " + ", ".join(f"`{k}`" for k in releasing),
            )
        return domain.release(decision, request, hash_key)

    @overload
    def evaluate_batch(
        self,
        domain: str,
        customers: Iterable[Mapping[str, Any]],
        *,
        now: datetime,
        explain: bool = False,
        errors: Literal["raise", "yield"] = "yield",
        failures: Literal["raise"] = "raise",
    ) -> Iterator[Decision | FactErrors]: ...

    @overload
    def evaluate_batch(
        self,
        domain: str,
        customers: Iterable[Mapping[str, Any]],
        *,
        now: datetime,
        explain: bool = False,
        errors: Literal["raise", "yield"] = "yield",
        failures: Literal["yield"],
    ) -> Iterator[Decision | FactErrors | EvaluationError]: ...

    def evaluate_batch(
        self,
        domain: str,
        customers: Iterable[Mapping[str, Any]],
        *,
        now: datetime,
        explain: bool = False,
        errors: Literal["raise", "yield"] = "yield",
        failures: Literal["raise", "yield"] = "raise",
    ) -> Iterator[Decision | FactErrors | EvaluationError]:
        """Decide for each customer in turn, streaming: one in, one out, nothing held.

        The whole batch uses the policies loaded when it started, even if a reload happens
        meanwhile. With ``errors="yield"`` a customer with bad facts yields its
        ``FactErrors`` in place of a decision; with ``"raise"`` it stops the batch. An
        ``EvaluationError`` (a decision that cannot be made, a plugin's failure included:
        an event backend that fails on one history) stops the batch; with a log, the
        decisions made before it are recorded and yielded first. With ``failures="yield"``
        it is yielded in that customer's place instead, and the batch goes on (nothing is
        logged for it).
        """
        state = self._state
        period = state.period(now)
        program = state.program(period, domain, now)
        shadow = period.shadow(domain)
        log = self.log
        if log is None:
            for facts in customers:
                try:
                    yield decide(program, shadow, facts, now, explain)  # the boundary: as every decision
                except FactErrors as exc:
                    if errors == "raise":
                        raise
                    yield exc
                except EvaluationError as exc:
                    if failures == "raise":
                        raise
                    yield _whose(exc, facts, program)
            return
        pending: list[Decision | FactErrors | EvaluationError] = []
        items: list[Item] = []
        classification = period.classifier
        for facts in customers:
            try:
                decision = decide(program, shadow, facts, now, explain)
                pending.append(decision)
                items.append((decision, facts, program, shadow))
            except (FactErrors, EvaluationError) as exc:
                if (errors if isinstance(exc, FactErrors) else failures) == "raise":
                    log.record(items, state.bundle, self.registry, classification)  # what was decided is kept
                    yield from pending
                    raise
                pending.append(exc if isinstance(exc, FactErrors) else _whose(exc, facts, program))
            if len(pending) >= self.log_batch:  # errors count too: a run of them alone is streamed
                log.record(items, state.bundle, self.registry, classification)  # durable before yielded
                yield from pending
                pending, items = [], []
        log.record(items, state.bundle, self.registry, classification)
        yield from pending

    # -- changing ----------------------------------------------------------------------------

    def reload(self, policies: str | Path | Sequence[str | Path] | None = None, *, settle: float | None = None) -> str:
        """Load the policies again (or others) and swap them in whole. Returns the new version.

        Raises ``PolicyErrors`` when any file is wrong, and when the files are not whole: a
        directory's ``charter.manifest`` does not match its files (C050-C053), or a file is
        still being written (C054: it changed while read, or kept changing for ``settle``
        seconds, by default ``Engine.settle``). The old policies keep serving.
        """
        paths = (
            self._paths if policies is None else ([policies] if isinstance(policies, (str, Path)) else list(policies))
        )
        with self._lock:  # one reload at a time; evaluations never wait for it
            sources = read_policies(paths, settle=self.settle if settle is None else settle, quiet=self._quiet)
            bundle = self._approve(build_bundle_cached(paths, self.registry, self._cache, sources), paths)
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

    def _approve(self, bundle: Bundle, paths: Sequence[str | Path]) -> Bundle:
        """``bundle`` with the approvals that let it in; raises ``PolicyErrors`` when the
        engine requires approvals and it has too few."""
        if self.approvals is None:
            return bundle
        from engine.audit.approvals import require_approvals

        approvals = require_approvals(bundle.version, paths, self.approvals)
        key = (bundle.version, tuple(a["sig"] for a in approvals))
        hit = self._approved.get(key)
        if hit is None or hit.files != bundle.files:
            if len(self._approved) >= 16:
                self._approved.pop(next(iter(self._approved)))
            hit = self._approved[key] = dataclasses.replace(bundle, approvals=approvals)
        return hit

    def watch(self, *, interval: float = 1.0, settle: float | None = None) -> PolicyWatcher:
        """Reload, in a background thread, whenever the policy files change and then stay
        quiet ``settle`` seconds (default ``Engine.settle``); look every ``interval`` seconds.
        A failed reload keeps the old policies and is kept in ``last_error``. Returns the
        running watcher: ``stop()`` it (or use it as a context manager)."""
        return PolicyWatcher(self, interval=interval, settle=settle).start()

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
        fns = snapshot_scorers(program)
        values: dict[str, ScoreValues] = {name: ScoreValues(self.snapshot_chunk) for name in needed}
        metrics: dict[str, dict[str, ScoreValues]] = {name: {} for name in ranking}
        skipped = counted = 0
        for facts in customers:
            scored = score_customer(program, fns, facts, now)
            if scored is None:
                skipped += 1
                continue
            row, measured = scored
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


Scorers = list[tuple[str, Callable[[dict[str, Any]], Any]]]


def snapshot_scorers(program: Program) -> Scorers:
    """The scores ``program``'s bands rank customers by, with their functions."""
    needed = program.compiled.policy.percentiles()
    return [(name, fn) for name, fn in program.compiled.scores if name in needed]


def score_customer(
    program: Program, fns: Scorers, facts: Mapping[str, Any], now: datetime
) -> tuple[list[tuple[str, float]], list[tuple[str, Mapping[str, Any]]]] | None:
    """One customer's ranked scores and its ranking scorers' metrics, as a snapshot counts
    them (``Engine.build_snapshot``, and each partition of ``engine.distributed``); None when
    its facts are bad or a score cannot be computed (the customer is skipped, never fatal)."""
    try:
        customer = program.check(facts)
        env = {"customer": customer, "now": now}
        row = [(name, float(fn(env))) for name, fn in fns]
        ranking = program.compiled.ranking
        measured = [(name, spec.metrics(customer, now)) for name, spec in ranking.items() if spec.metrics is not None]
    except Exception:  # bad facts or an unscorable customer: counted, never fatal
        return None
    return row, measured


# -- watching ---------------------------------------------------------------------------------


class PolicyWatcher:
    """Polls an engine's policy files (their stat: size, times, inode; manifests included) and
    reloads once they changed and then stayed quiet ``settle`` seconds.

    A failed reload leaves the old policies serving; the error is kept in ``last_error`` (and
    logged on ``charter.reload``) until a reload succeeds, and the same files are not tried
    again until they change. ``poll()`` looks once, for a caller that keeps its own time.
    """

    def __init__(self, engine: Engine, *, interval: float = 1.0, settle: float | None = None) -> None:
        self.engine = engine
        self.interval = interval
        self.settle = engine.settle if settle is None else settle
        self.last_error: Exception | None = None
        self.last_version: str = engine.bundle_version
        self.reloads = 0  # reloads that succeeded
        self.failures = 0  # reloads that failed
        self._tried: dict[str, Stat | None] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll(self) -> bool:
        """Look at the files once; reload if they changed since the last try and have been
        quiet ``settle`` seconds. Returns whether it tried a reload."""
        stats = listing(self.engine._paths, manifests=True)
        wait, _ = self.engine._quiet.wait(stats, self.settle)  # what it sees, the reload knows
        if stats == self._tried or wait > 0:
            return False
        self._tried = stats
        try:
            version = self.engine.reload(settle=self.settle)
        except Exception as exc:  # the old policies keep serving; kept for whoever asks
            self.last_error = exc
            self.failures += 1
            _LOG.warning("policies not reloaded: %s", exc.describe() if isinstance(exc, PolicyError) else exc)
            return True
        self.last_error = None
        self.last_version = version
        self.reloads += 1
        return True

    def start(self) -> PolicyWatcher:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="charter-policy-watcher", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop watching; waits for a reload under way to finish."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> PolicyWatcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception as exc:  # never let the watcher die: a listing that failed is tried again
                self.last_error = exc
            self._stop.wait(self.interval)


def _whose(exc: EvaluationError, facts: Any, program: Program) -> EvaluationError:
    """``exc`` naming the customer of the request it failed on (``Domain.customer_id``: the
    request's ``id`` unless the domain says otherwise), as ``evaluate_batch`` yields it."""
    subject: Any = None
    if isinstance(facts, Mapping):
        domain = program.compiled.domain
        subject = domain.customer_id(facts) if domain is not None else facts.get("id")
    # a copy: the same error may be raised for every request (a program that cannot bind); made
    # without calling the class (a subclass may take other arguments than its message)
    made = type(exc).__new__(type(exc))
    made.__dict__.update(exc.__dict__)
    made.args = exc.args
    made.subject = None if subject is None else str(subject)
    return made
