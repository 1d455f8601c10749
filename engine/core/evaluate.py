"""Stage 4, evaluate: facts and the caller's ``now`` in, a ``Decision`` out.

A ``Program`` is one compiled policy bound to a bundle version and (when its bands rank
customers) a population snapshot. Evaluation is a pure function of those, the facts and
``now``: it reads no clock, no randomness and no files.

Scores first, then the steps in dependency order. A condition that cannot be evaluated
(an absent fact, a division by zero) is *undefined*: it does not match and the decision's
``notes`` say why. A scorer plugin that raises or returns something other than a number is
reported in the notes by plugin and scorer name; the score is then absent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from engine.core.codegen import generate
from engine.core.compile import CompiledPolicy, StepRun, bind_ranking_scorer
from engine.core.decision import Decision, FiredRule, RecordedNote, TraceStep
from engine.core.expr import EvalError
from engine.core.facts import Reject
from engine.errors import EvaluationError, FactError, FactErrors, PluginError, SnapshotError
from engine.population import Snapshot


class Program:
    """A compiled policy ready to decide: bound to its bundle version and snapshot."""

    def __init__(self, compiled: CompiledPolicy, bundle_version: str, snapshot: Snapshot | None = None) -> None:
        self.compiled = compiled
        self.policy = compiled.policy
        self.domain = compiled.policy.kind
        self.bundle_version = bundle_version
        self.snapshot = snapshot
        self.snapshot_id = snapshot.id if snapshot is not None and self.needs_snapshot else None
        assert compiled.checker is not None
        self.check = compiled.checker.check
        self.scores = list(compiled.scores)
        self.scorer_names = {name: decl.scorer for name, decl in compiled.policy.scores.items() if decl.scorer}
        self.runs: list[StepRun] | None = None
        self.runner = compiled.runner
        self.upstream: dict[str, Program] = {}  # set by the engine: the programs of the domains `uses:` names
        # what it `uses:`: each domain's name, the path of its part of the facts, that path written out
        self.uses = tuple((name, use.path, ".".join(use.path)) for name, use in compiled.policy.uses.items())
        self.unbound: EvaluationError | SnapshotError | None = None
        digests = compiled.score_digests
        cut = None
        if snapshot is not None:

            def cut(score: str, percentile: float) -> float:
                return snapshot.cut(score, percentile, digests[score])

        try:
            self._bind_ranking_scores(snapshot)
            self.runs = [step.bind(cut) for step in compiled.steps]
        except (EvaluationError, SnapshotError) as exc:
            self.unbound = exc
        self.decide = generate(compiled, self.runs, cut, self.scores, self._score) if self.runs is not None else None

    def _bind_ranking_scores(self, snapshot: Snapshot | None) -> None:
        """Give scorers that rank against the population their snapshot's cut points."""
        for i, (name, _) in enumerate(self.scores):
            spec = self.compiled.ranking.get(name)
            if spec is None:
                continue
            if snapshot is None:
                raise EvaluationError(
                    f"score `{name}` ranks customers and needs a population snapshot",
                    code="V001",
                    hint="build one with `charter snapshot` or pass `snapshot=` to the engine",
                )
            stats = snapshot.metric_cuts(name, self.compiled.score_digests[name])
            self.scores[i] = (name, bind_ranking_scorer(spec, dict(self.policy.scores[name].args), stats))

    def facts_read(self, facts: Mapping[str, Any]) -> dict[str, Any]:
        """The part of ``facts`` this policy (and those it uses) can read: what a log keeps."""
        if self.runner is not None:
            shape = getattr(self.runner, "shape", None)  # a request shape names what the domain reads
            if shape is None:
                return dict(facts)
            keys = set(shape.schema) | {use.path[0] for use in self.policy.uses.values()} | {"id"}
        else:
            keys = set(self.policy.facts) | {use.path[0] for use in self.policy.uses.values()} | {"id"}
        return {k: v for k, v in facts.items() if k in keys}

    @property
    def needs_snapshot(self) -> bool:
        return bool(self.compiled.ranking) or any(step.needs_snapshot for step in self.compiled.steps)

    def evaluate(self, facts: Mapping[str, Any], now: datetime, *, explain: bool = False) -> Decision:
        """Decide for one customer. Raises ``FactErrors`` for bad facts and ``EvaluationError``
        when the decision cannot be made (a plugin's failure included: never another exception)."""
        if not isinstance(now, datetime) or now.tzinfo is None:
            raise EvaluationError(
                "`now` must be a timestamp with a time zone",
                code="V002",
                hint="pass e.g. datetime(2025, 6, 30, tzinfo=timezone.utc)",
            )
        if self.runner is not None:
            return self._evaluate_domain(facts, now, explain)
        if self.policy.uses:
            upstream = self._upstream(facts, now, explain)
            decision = self._evaluate(facts, now, explain)
            decision.upstream = tuple(upstream.values())
            return decision
        return self._evaluate(facts, now, explain)

    def _evaluate(self, facts: Mapping[str, Any], now: datetime, explain: bool) -> Decision:
        decide = self.decide
        if decide is not None and not explain and type(facts) is dict:
            try:
                result = decide(facts, now)
            except Reject:
                raise self.compiled.checker.explain(facts) from None  # type: ignore[union-attr]
            return self._decision(facts, now, result[2], result[3], result[1], result[4], None)
        customer = self.check(facts)
        runs = self.runs
        if runs is None:
            assert self.unbound is not None
            raise self.unbound
        scores: dict[str, float] = {}
        outputs: dict[str, Any] = {}
        notes: list[str] = []
        env = {"customer": customer, "scores": scores, "outputs": outputs, "now": now}
        for i in range(len(self.scores)):
            self._score(i, env, scores, notes)
        fired: list[FiredRule] = []
        trace: list[TraceStep] | None = [] if explain else None
        for run in runs:
            run(env, outputs, fired, notes, trace)
        return self._decision(facts, now, outputs, fired, scores, notes, trace)

    def _evaluate_domain(self, facts: Mapping[str, Any], now: datetime, explain: bool) -> Decision:
        """A domain with its own semantics: decide the domains it uses first, then run it."""
        if type(facts) is not dict and not isinstance(facts, Mapping):
            raise FactErrors(
                [FactError("the request must be a JSON object", field="", value=facts, rule="type", code="F001")]
            )
        upstream = self._upstream(facts, now, explain) if self.uses else {}
        assert self.runner is not None
        try:
            result = self.runner(facts, now, upstream, explain)
        except (FactErrors, EvaluationError):
            raise
        except PluginError as exc:  # e.g. an event backend that could not match: this decision fails, named
            raise EvaluationError(
                f"`{self.domain}` could not decide: {exc.message}", code=exc.code, hint=exc.hint
            ) from exc
        except Exception as exc:  # a domain plugin's own bug: this decision fails, never the host
            domain = self.compiled.domain
            who = f" (plugin `{domain.plugin}`)" if domain is not None and domain.plugin else ""
            raise EvaluationError(
                f"the `{self.domain}` domain{who} failed: {type(exc).__name__}: {exc}",
                code="V006",
                hint="a fault in the domain's code, not in the policy or the facts: report it to its authors",
            ) from exc
        subject = result.subject if result.subject is not None else facts.get("id")
        return Decision(
            self.domain,
            str(subject) if subject is not None else None,
            result.outputs,
            tuple(result.fired),
            now,
            self.bundle_version,
            self.policy.id,
            None,  # snapshot_id
            {},  # scores
            tuple(result.notes),
            tuple(result.trace) if result.trace is not None else None,
            tuple(upstream.values()),
        )

    def _upstream(self, facts: Mapping[str, Any], now: datetime, explain: bool) -> dict[str, Decision]:
        """The decisions of the domains this policy ``uses:``, each on its part of the facts."""
        upstream: dict[str, Decision] = {}
        for name, path, where in self.uses:
            program = self.upstream.get(name)
            if program is None:
                raise EvaluationError(f"`{self.domain}` uses `{name}`, which is not loaded", code="V007")
            part: Any = facts
            for key in path:
                part = part.get(key) if type(part) is dict or isinstance(part, Mapping) else None
            if type(part) is not dict and not isinstance(part, Mapping):
                raise FactErrors(
                    [
                        FactError(
                            f"`{where}` must be an object: `{name}` decides on it",
                            field=where,
                            value=part,
                            rule="type",
                            code="F001",
                            hint=f"the policy's `uses: {{{name}: {where}}}` reads it",
                        )
                    ]
                )
            try:  # through ``evaluate``, which replay wraps to know where a plugin is asked
                upstream[name] = program.evaluate(part, now, explain=explain)
            except FactErrors as exc:
                raise exc.within(where) from None
        return upstream

    def _score(self, i: int, env: dict[str, Any], scores: dict[str, float], notes: list[str]) -> None:
        """Compute score ``i`` exactly, noting why when it cannot be computed."""
        name, fn = self.scores[i]
        try:
            value = fn(env)
        except RecordedNote as exc:  # replay: the scorer gave no value when logged, with this note
            if exc.note is not None:
                notes.append(exc.note)
            return
        except EvalError as exc:
            notes.append(f"score `{name}` is undefined: {exc}")
            return
        except KeyError as exc:
            notes.append(f"score `{name}` is undefined: fact `{exc.args[0]}` is absent")
            return
        except EvaluationError:  # over the work budget (V008): the decision fails, as a condition's would
            raise
        except Exception as exc:  # a scorer plugin's own bug: report it by name, keep deciding
            notes.append(f"scorer `{self.scorer_names.get(name, name)}` failed: {type(exc).__name__}: {exc}")
            return
        if type(value) is not float or value - value != 0.0:  # not a float, or inf/nan
            if type(value) is int:
                value = float(value)
            elif not (isinstance(value, float) and math.isfinite(value)):
                notes.append(f"scorer `{self.scorer_names.get(name, name)}` returned `{value!r}`, not a number")
                return
        scores[name] = float(value)

    def _decision(
        self,
        facts: Mapping[str, Any],
        now: datetime,
        outputs: dict[str, Any],
        fired: list[FiredRule],
        scores: dict[str, float],
        notes: list[str],
        trace: list[TraceStep] | None,
    ) -> Decision:
        subject = facts.get("id")
        return Decision(
            domain=self.domain,
            subject=str(subject) if subject is not None else None,
            outputs=outputs,
            fired=tuple(fired),
            now=now,
            bundle_version=self.bundle_version,
            policy_id=self.policy.id,
            snapshot_id=self.snapshot_id,
            scores=scores,
            notes=tuple(notes),
            trace=tuple(trace) if trace is not None else None,
        )
