"""Population-scale batch on a Dask cluster: the snapshot and the decisions where the data lives.

::

    import dask.dataframe as dd
    from engine.distributed import evaluate_dask, snapshot_dask

    customers = dd.read_parquet("s3://crm/customers/")        # or a dask bag of dicts
    snap = snapshot_dask("policies", "tiering", customers, now=now)
    evaluate_dask("policies", "tiering", customers, now=now, snapshot=snap,
                  store_url="postgresql://...", out="s3://crm/tiers/")

Each worker process loads the engine once from the policy directory (the same path on every
worker, checked: a worker whose policies are another bundle refuses, C101) and keeps it.

The snapshot is exact: each partition scores its customers where they live and returns, per
ranked score, its scores sorted (a stable sort); the client merges them in partition order with
a stable sort, which is the order ``Engine.build_snapshot`` sees, and cuts at the same ranks
(``engine.population``). So the cut points and the snapshot id are the single process's. The
client holds the sorted scores: 8 bytes per customer and ranked score (80 MB for 10M).

Decisions are made on the workers by ``Engine.evaluate_batch``, recorded (when ``store_url``
is given) in that store's decision log by every worker at once, and written to Parquet: one
row per input record, in input order, with ``subject``, ``error`` (the bad facts, as JSON),
``record_id``, one column per declared output, and (unless ``whole=False``) ``decision``, the
decision as JSON (``Decision.to_dict``). docs/scale.md says how to run it on a real cluster.

Dask is imported only here and only when used (``pip install 'charter[scale]'``).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import glob
import math
import sys
import threading
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import orjson

from engine.api import WHOLE_PERCENTILES, Engine, score_customer, snapshot_scorers
from engine.core.decision import jsonable
from engine.errors import CharterError, FactErrors, SnapshotError
from engine.population import ScoreCuts, Snapshot, cut_points

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from distributed import Client

    Floats = npt.NDArray[np.float64]

PARQUET = (".parquet", ".pq")
FIXED = ("subject", "error", "record_id", "decision")  # the result columns besides the outputs


class CarriedError(CharterError):
    """A Charter error raised on a worker, carried to the client with its code and hint."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_carried, (self.message, self.hint, self.code))


def _carried(message: str, hint: str | None, code: str) -> CarriedError:
    return CarriedError(message, hint=hint, code=code)


def _dask() -> None:
    """Raise C102 unless Dask is installed."""
    try:
        import dask.dataframe  # noqa: F401
        import distributed  # noqa: F401
    except ImportError:
        raise CharterError(
            "the distributed batch needs Dask, which is not installed",
            code="C102",
            hint="pip install 'charter[scale]'",
        ) from None


# --------------------------------------------------------------------------------------------
# partitions: what a task reads
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FilePart:
    """One facts file (JSON, JSON Lines or CSV) read on the worker with ``engine.inputs``."""

    path: str
    fmt: str = "auto"


def files(source: str, fmt: str = "auto") -> list[FilePart]:
    """The facts files of ``source`` (a file, a directory or a glob), one partition each."""
    p = Path(source)
    found = sorted(str(f) for f in p.iterdir() if f.is_file()) if p.is_dir() else sorted(glob.glob(source))
    if not found:
        raise CharterError(f"no facts files at `{source}`", code="C103", hint="give a file, a directory or a glob")
    return [FilePart(f, fmt) for f in found]


def _partitions(data: Any) -> list[Any]:
    """Delayed partitions of a dask dataframe or bag, or a list of ``FilePart``."""
    if isinstance(data, (list, tuple)):
        return list(data)
    return list(data.to_delayed())


def _records(part: Any, engine: Engine, domain: str) -> Iterator[dict[str, Any]]:
    """The facts of one partition: a file streamed, a pandas frame's rows, or a bag's dicts."""
    declared = engine.program(domain).policy.facts
    if isinstance(part, FilePart):
        from engine.inputs import read_facts

        yield from read_facts(part.path, part.fmt, declared)
        return
    if hasattr(part, "to_dict") and hasattr(part, "columns"):
        integers = {n for n, d in declared.items() if d.type == "integer"}
        for row in part.to_dict("records"):
            yield {k: _plain(v, k in integers) for k, v in row.items() if not _missing(v)}
        return
    yield from part


def _missing(value: Any) -> bool:
    """A missing cell of a frame (None, NaN, NaT, NA): an absent fact."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    return type(value).__name__ in ("NaTType", "NAType")


def _plain(value: Any, integer: bool = False) -> Any:
    """A frame's cell as the JSON reader would give it (numpy and pandas types made plain)."""
    if integer and isinstance(value, float) and value.is_integer():
        return int(value)  # an integer column with gaps is read as floats
    if hasattr(value, "to_pydatetime"):
        return value.to_pydatetime()
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return _plain(value.tolist())
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if not _missing(v)}
    return value


# --------------------------------------------------------------------------------------------
# the engine of each worker process
# --------------------------------------------------------------------------------------------

KEPT = 8  # engines a worker process keeps (one per policies, log and snapshot), the oldest dropped
_ENGINES: dict[tuple[Any, ...], Engine] = {}
_LOCK = threading.Lock()


def worker_engine(
    paths: tuple[str, ...],
    version: str,
    *,
    store_url: str | None = None,
    key_file: str | None = None,
    snapshot: Snapshot | None = None,
) -> Engine:
    """The engine of this process for these policies (log and snapshot), loaded once and kept.

    A kept engine of another bundle than ``version`` (the client's) reloads its files; C101 when
    they still are not that bundle."""
    key = (paths, store_url, key_file, snapshot.id if snapshot is not None else None)
    with _LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            log = None
            if store_url is not None:
                from engine.audit import DecisionLog, Protector, load_key
                from engine.plugins import open_store

                store = open_store(store_url)
                log = DecisionLog(store, Protector(store, load_key(key_file)))
            if len(_ENGINES) >= KEPT:
                _ENGINES.pop(next(iter(_ENGINES)))
            engine = _ENGINES[key] = Engine(list(paths), log=log, snapshot=snapshot)
    if engine.bundle_version != version and engine.reload(settle=0) != version:  # changed since kept?
        raise CarriedError(
            f"the policies at `{', '.join(paths)}` on this worker are bundle `{engine.bundle_version}`,"
            f" not the client's `{version}`",
            code="C101",
            hint="give every worker the same policy files at the same path",
        )
    return engine


def _on_worker(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with its Charter errors carried to the client whole (code and hint); a partial of
    module functions, so that Dask ships it by name."""
    return functools.partial(_guarded, fn)


def _guarded(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except CarriedError:
        raise
    except CharterError as exc:
        raise CarriedError(exc.message, hint=exc.hint, code=exc.code) from None


def _policies(engine_or_policies: Engine | str | Path | Sequence[str | Path]) -> tuple[tuple[str, ...], Engine]:
    """The policy paths the workers load (as the client was given them: a decision names its
    files so), and the client's engine over them."""
    if isinstance(engine_or_policies, Engine):
        engine = engine_or_policies
        given: Sequence[str | Path] = engine._paths
    else:
        given = [engine_or_policies] if isinstance(engine_or_policies, (str, Path)) else engine_or_policies
        engine = Engine(given)
    return tuple(str(p) for p in given), engine


# --------------------------------------------------------------------------------------------
# the snapshot
# --------------------------------------------------------------------------------------------


@dataclass
class Scores:
    """What one partition contributes to a snapshot: each ranked score's values, sorted."""

    counted: int = 0
    skipped: int = 0
    values: dict[str, Floats] = field(default_factory=dict)
    metrics: dict[str, dict[str, Floats]] = field(default_factory=dict)  # by ranking score, then metric


def score_partition(part: Any, paths: tuple[str, ...], version: str, domain: str, now: datetime) -> Scores:
    """Score one partition's customers as ``Engine.build_snapshot`` does, one by one."""
    import numpy as np

    engine = worker_engine(paths, version)
    program = engine.program(domain)
    compiled = program.compiled
    needed = compiled.policy.percentiles()
    fns = snapshot_scorers(program)
    values: dict[str, array[float]] = {name: array("d") for name in needed}
    metrics: dict[str, dict[str, array[float]]] = {name: {} for name in compiled.ranking}
    out = Scores()
    for facts in _records(part, engine, domain):
        scored = score_customer(program, fns, facts, now)  # as Engine.build_snapshot scores each
        if scored is None:
            out.skipped += 1
            continue
        row, measured = scored
        out.counted += 1
        for name, value in row:
            values[name].append(value)
        for name, measures in measured:
            for metric, value in measures.items():
                metrics[name].setdefault(metric, array("d")).append(float(value))

    def ordered(kept: array[float]) -> Floats:
        return np.sort(np.frombuffer(kept, dtype=np.float64), kind="stable")

    out.values = {name: ordered(kept) for name, kept in values.items()}
    out.metrics = {name: {m: ordered(kept) for m, kept in by.items()} for name, by in metrics.items()}
    return out


def _cuts(parts: Sequence[Floats], percentiles: Iterable[float]) -> dict[float, float]:
    """Nearest-rank cut points over the partitions' sorted values, merged in partition order."""
    import numpy as np

    wanted = tuple(percentiles)
    merged = np.sort(np.concatenate(parts), kind="stable") if parts else np.empty(0)
    n = len(merged)
    if n == 0:
        return cut_points([], wanted)  # raises S006, as the single process does
    return {p: float(merged[min(int(p / 100.0 * n), n - 1)]) for p in wanted}


def _rankable(engine: Engine, domain: str, now: datetime) -> None:
    """Raise what ``Engine.build_snapshot`` raises of ``domain``'s policy before it reads a
    customer (S009: bands over a ranking score); its error for no customers at all is expected."""
    try:
        engine.build_snapshot((), now=now, domain=domain)
    except SnapshotError as exc:
        try:
            cut_points([], ())
        except SnapshotError as empty:  # S006, named by the module that raises it
            if exc.code == empty.code:
                return
        raise exc from None


def snapshot_dask(
    engine_or_policies: Engine | str | Path | Sequence[str | Path],
    domain: str | None,
    data: Any,
    *,
    now: datetime,
) -> Snapshot:
    """The population snapshot of ``data`` (a dask dataframe or bag, or ``files(...)``) for
    ``domain``'s bands, computed on the cluster: the same as ``Engine.build_snapshot`` over the
    same customers in partition order, id included. Uses the current Dask client."""
    _dask()
    from dask.base import compute
    from dask.delayed import delayed

    paths, engine = _policies(engine_or_policies)
    domain = domain if domain is not None else engine.default_ranking_domain()
    _rankable(engine, domain, now)
    task = delayed(_on_worker(score_partition), pure=False)
    results: Sequence[Scores] = compute(  # type: ignore[no-untyped-call]  # dask's compute has no annotations
        *(task(part, paths, engine.bundle_version, domain, now) for part in _partitions(data))
    )
    return _snapshot(engine, domain, now, results)


def _snapshot(engine: Engine, domain: str, now: datetime, results: Sequence[Scores]) -> Snapshot:
    """The snapshot from every partition's sorted scores (``Engine.build_snapshot``'s last step)."""
    compiled = engine.program(domain).compiled
    needed = compiled.policy.percentiles()
    counted = sum(r.counted for r in results)
    cuts = {
        name: ScoreCuts(
            name,
            compiled.score_digests[name],
            sum(len(r.values[name]) for r in results),
            _cuts([r.values[name] for r in results], sorted(set(needed[name]) | WHOLE_PERCENTILES)),
        )
        for name in needed
    }
    for name, spec in compiled.ranking.items():
        names = sorted({m for r in results for m in r.metrics.get(name, {})})
        by_metric = {
            m: _cuts([r.metrics[name][m] for r in results if m in r.metrics[name]], spec.percentiles) for m in names
        }
        cuts[name] = ScoreCuts(name, compiled.score_digests[name], counted, {}, by_metric)
    stamp = now.isoformat().replace("+00:00", "Z")
    return Snapshot(compiled.policy.id, cuts, sum(r.skipped for r in results), as_of=stamp)


# --------------------------------------------------------------------------------------------
# deciding
# --------------------------------------------------------------------------------------------

_ARROW = {"string": "string", "boolean": "bool", "integer": "int64", "number": "float64"}


def result_columns(engine: Engine, domain: str, whole: bool = True) -> dict[str, str]:
    """The result table's columns and their Arrow types: the fixed ones, each output, and
    (``whole``) the decision as JSON."""
    outputs = engine.program(domain).policy.outputs
    columns = {"subject": "string", "error": "string", "record_id": "string"}
    columns.update({name: _ARROW.get(decl.type, "json") for name, decl in outputs.items() if name not in FIXED})
    if whole:
        columns["decision"] = "string"
    return columns


def _schema(columns: Mapping[str, str]) -> Any:
    """The Arrow schema of ``result_columns`` (pyarrow ships no type information: Any)."""
    import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type information

    return pa.schema(
        [(name, pa.string() if kind == "json" else pa.type_for_alias(kind)) for name, kind in columns.items()]
    )


# an output's value in its column: native when it fits the column's type, else null
_CELL: dict[str, Callable[[Any], Any]] = {
    "string": lambda v: v if type(v) is str else None,
    "bool": lambda v: v if type(v) is bool else None,
    "int64": lambda v: v if type(v) is int else None,
    "float64": lambda v: float(v) if type(v) in (int, float) else None,
    "json": lambda v: None if v is None else _json(jsonable(v)),
}


def decide_partition(
    part: Any, paths: tuple[str, ...], version: str, job: Mapping[str, Any], columns: Mapping[str, str]
) -> Any:
    """Decide (and log) one partition's records on this worker; one result row each."""
    engine = worker_engine(
        paths, version, store_url=job["store_url"], key_file=job["key_file"], snapshot=job["snapshot"]
    )
    rows: dict[str, list[Any]] = {name: [] for name in columns}
    subject, error, record, whole = rows["subject"], rows["error"], rows["record_id"], rows.get("decision")
    outputs = [(name, rows[name].append, _CELL[kind]) for name, kind in columns.items() if name not in FIXED]
    domain = job["domain"]
    for result in engine.evaluate_batch(domain, _records(part, engine, domain), now=job["now"], explain=job["explain"]):
        if isinstance(result, FactErrors):
            subject.append(result.subject or None)
            error.append(_json(result.to_dict()))
            record.append(None)
            for _, add, _ in outputs:
                add(None)
        else:
            subject.append(result.subject)
            error.append(None)
            record.append(result.record_id)
            values = result.outputs
            for name, add, cell in outputs:
                add(cell(values.get(name)))
        if whole is not None:
            whole.append(None if isinstance(result, FactErrors) else _json(result.to_dict()))
    return _frame(rows, columns)


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


@dataclass(frozen=True)
class Result:
    """What a distributed batch did: where the results are, how many rows and bad records."""

    out: str
    rows: int
    bad: int
    snapshot_id: str | None


def evaluate_dask(
    policies: Engine | str | Path | Sequence[str | Path],
    domain: str,
    data: Any,
    *,
    now: datetime,
    out: str | Path,
    store_url: str | None = None,
    key_file: str | Path | None = None,
    snapshot: Snapshot | None = None,
    explain: bool = False,
    whole: bool = True,
) -> Result:
    """Decide ``domain`` for every record of ``data`` on the cluster; write Parquet to ``out``.

    ``store_url``: record every decision in that store's decision log (a PostgreSQL URL for a
    real cluster; each worker appends, the store keeps one chain), sealed with the key from
    ``CHARTER_LOG_KEY`` or ``key_file`` on each worker. ``snapshot``: the population to rank
    against; without one, a domain whose policy ranks customers gets ``snapshot_dask`` of
    ``data``, and one that uses such a domain raises C104. ``whole``: also each decision as
    JSON (``Decision.to_dict``) in column ``decision``. Uses the current Dask client."""
    _dask()
    import dask.dataframe as dd
    from dask.delayed import delayed

    overwrite = _replaceable(str(out))
    paths, engine = _policies(policies)
    ranking = engine.ranking_domain(domain)
    if snapshot is None and ranking is not None:
        if ranking != domain:
            raise CharterError(
                f"the `{ranking}` policy ranks customers, so `{domain}` needs a population snapshot",
                code="C104",
                hint="pass a snapshot (`snapshot_dask` of the customers, or `--population`)",
            )
        snapshot = snapshot_dask(engine, domain, data, now=now)
    columns = result_columns(engine, domain, whole)
    job = {
        "domain": domain,
        "now": now,
        "explain": explain,
        "snapshot": snapshot,
        "store_url": store_url,
        "key_file": str(Path(key_file).resolve()) if key_file is not None else None,
    }
    task = delayed(_on_worker(decide_partition), pure=False)
    parts = [task(part, paths, engine.bundle_version, job, columns) for part in _partitions(data)]
    frame = dd.from_delayed(parts, meta=_frame({name: [] for name in columns}, columns), verify_meta=False)
    frame.to_parquet(str(out), schema=_schema(columns), write_index=False, overwrite=overwrite)
    return _summary(str(out), snapshot.id if snapshot is not None else None)


_PANDAS = {"string": "string", "json": "string", "bool": "boolean", "int64": "Int64", "float64": "Float64"}


def _frame(rows: Mapping[str, list[Any]], columns: Mapping[str, str]) -> Any:
    """A pandas frame of the result columns, each of its nullable pandas type."""
    import pandas as pd  # type: ignore[import-untyped]  # no stubs installed (pandas-stubs is not a dependency)

    return pd.DataFrame({name: pd.Series(rows[name], dtype=_PANDAS[kind]) for name, kind in columns.items()})


def _replaceable(out: str) -> bool:
    """Whether ``out`` is a local directory of an earlier run's Parquet files (replaced whole);
    False when it does not exist or is a URL. Raises C106 when it holds anything else."""
    path = Path(out)
    if "://" in out or not path.exists():
        return False
    if path.is_dir() and all(f.is_file() and f.name.endswith(_WRITTEN) for f in path.iterdir()):
        return True
    raise CharterError(
        f"`{out}` is not the Parquet output of an earlier run, so it is not replaced",
        code="C106",
        hint="give a new directory, or one that holds only the Parquet files a run wrote",
    )


_WRITTEN = (".parquet", "_metadata", "_common_metadata")


def _summary(out: str, snapshot_id: str | None) -> Result:
    import pyarrow.dataset as ds  # type: ignore[import-untyped]  # pyarrow ships no type information

    table = ds.dataset(out, format="parquet").to_table(columns=["error"])
    return Result(out, table.num_rows, table.num_rows - table.column("error").null_count, snapshot_id)


# --------------------------------------------------------------------------------------------
# the command line: charter evaluate --on dask://HOST:PORT | dask-local:N
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def cluster(on: str) -> Iterator[Client]:
    """A Dask client of the scheduler at ``dask://HOST:PORT``, or of a local cluster of N
    worker processes for ``dask-local:N``; closed on the way out."""
    _dask()
    from distributed import Client, LocalCluster

    if on.startswith("dask://") and len(on) > len("dask://"):
        with Client("tcp://" + on.removeprefix("dask://")) as client:  # type: ignore[no-untyped-call]  # dask's
            yield client
        return
    workers = on.removeprefix("dask-local:")
    if not on.startswith("dask-local:") or not workers.isdigit() or int(workers) < 1:
        _bad_on(on)
    with (
        LocalCluster(  # type: ignore[no-untyped-call]  # distributed's constructors have no annotations
            n_workers=int(workers), threads_per_worker=1, processes=True, dashboard_address=None
        ) as local,
        Client(local) as client,  # type: ignore[no-untyped-call]
    ):
        yield client


def _bad_on(on: str) -> NoReturn:
    raise CharterError(
        f"`--on {on}` is not a Dask cluster",
        code="C100",
        hint="write `--on dask://HOST:PORT` (a running scheduler) or `--on dask-local:N` (N local workers)",
    )


def source(facts: str, fmt: str) -> Any:
    """The partitions of ``--facts``: Parquet read by Dask, or each facts file on its own."""
    if facts.endswith(PARQUET) or (Path(facts).is_dir() and any(Path(facts).glob("*.parquet"))):
        import dask.dataframe as dd

        return dd.read_parquet(facts)
    return files(facts, fmt)


def run(args: argparse.Namespace, engine: Engine, now: datetime) -> int:
    """``charter evaluate --on``: the snapshot and the decisions on the cluster, Parquet out."""
    if not args.out:
        raise CharterError("`--on` writes its results to Parquet: give `--out DIR`", code="C105")
    with cluster(args.on):
        snapshot = _cli_snapshot(args, engine, now)
        if args.log:
            from engine.audit import load_key

            load_key(args.key_file, create=True)  # made here on a first run, read by each worker
        result = evaluate_dask(
            engine,
            args.domain,
            source(args.facts, args.format),
            now=now,
            out=args.out,
            store_url=args.store if args.log else None,
            key_file=args.key_file,
            snapshot=snapshot,
            explain=args.explain,
        )
    if snapshot is None and result.snapshot_id is not None:
        print(f"population snapshot {result.snapshot_id} computed on the cluster", file=sys.stderr)
    print(
        f"{result.rows} record(s), {result.rows - result.bad} decision(s), {result.bad} with bad facts;"
        f" Parquet in {result.out}",
        file=sys.stderr,
    )
    return 1 if result.bad else 0


def _cli_snapshot(args: argparse.Namespace, engine: Engine, now: datetime) -> Snapshot | None:
    """The snapshot ``--snapshot`` names, or one computed on the cluster from ``--population``
    (or ``--facts``) and kept in ``--store``; None when the domain ranks no one."""
    from engine import population
    from engine.plugins import open_store

    ranking = engine.ranking_domain(args.domain)
    if ranking is None:
        return None
    if args.snapshot:
        if Path(args.snapshot).is_file():
            return population.load(args.snapshot)
        return population.fetch_snapshot(args.snapshot, open_store(args.store))
    given = args.population or (args.facts if ranking == args.domain else None)
    if given is None:
        return None  # evaluate_dask says what is missing (C104)
    snap = snapshot_dask(engine, ranking, source(given, "auto"), now=now)
    population.store_snapshot(snap, open_store(args.store))
    print(f"population snapshot {snap.id} from {given} (on the cluster), kept in {args.store}", file=sys.stderr)
    return snap
