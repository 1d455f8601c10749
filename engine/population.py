"""Population snapshots: the percentile cut points that rank-based rules (tiering bands) need.

A snapshot is computed from a batch of customers for one policy: each score the policy's
bands use is computed for every customer, sorted, and cut at the percentiles the bands
start at. Cut points use the nearest-rank rule on the ascending order::

    cut(p) = sorted_scores[floor(p / 100 * n)]        (clamped to the last index)

so with 1,000 customers ``cut(80)`` is the 801st smallest score and exactly the 200
customers from it upward are "at or above the 80th percentile" (ties go to the higher
band). The cut points are exact at any size, in one pass over the customers with bounded
memory (``ScoreValues``): up to a million scores are held in memory, and beyond that each
million is sorted and written to a temporary file, the cut points read off a merge of the
sorted runs. 10M customers take 8 MB of memory and 80 MB of temporary disk per ranked score.

A snapshot is content-addressed: its ``id`` is the SHA-256 of its canonical JSON, and it
records the digest of each score's definition, so a snapshot cannot silently be used
with a policy whose scores have changed.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import tempfile
from array import array
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import IO, Any

from engine.errors import SnapshotError
from engine.storage import Store

METHOD = "nearest-rank-v1"


@dataclass(frozen=True)
class ScoreCuts:
    """Cut points of one score: percentile -> score value."""

    score: str
    definition: str
    count: int
    cuts: dict[float, float]
    metrics: dict[str, dict[float, float]] = field(default_factory=dict)  # for ranking scorers

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "definition": self.definition,
            "count": self.count,
            "cuts": {_pct_key(p): v for p, v in sorted(self.cuts.items())},
        }
        if self.metrics:
            out["metrics"] = {
                m: {_pct_key(p): v for p, v in sorted(c.items())} for m, c in sorted(self.metrics.items())
            }
        return out


@dataclass(frozen=True)
class Snapshot:
    """Cut points of every ranked score of one policy, computed from one population."""

    policy_id: str
    scores: dict[str, ScoreCuts]
    skipped: int = 0
    as_of: str = ""
    method: str = METHOD

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy_id": self.policy_id,
            "method": self.method,
            "skipped": self.skipped,
            "as_of": self.as_of,
            "scores": {name: s.to_dict() for name, s in sorted(self.scores.items())},
        }

    def canonical(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()

    @cached_property
    def id(self) -> str:
        """``pop-`` + SHA-256 of the canonical form; computed once (a snapshot is never changed)."""
        return "pop-" + hashlib.sha256(self.canonical()).hexdigest()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Snapshot:
        try:
            scores = {
                name: ScoreCuts(
                    name,
                    str(s["definition"]),
                    int(s["count"]),
                    {float(p): float(v) for p, v in s["cuts"].items()},
                    {m: {float(p): float(v) for p, v in c.items()} for m, c in s.get("metrics", {}).items()},
                )
                for name, s in data["scores"].items()
            }
            snap = cls(
                str(data["policy_id"]),
                scores,
                int(data.get("skipped", 0)),
                str(data.get("as_of", "")),
                str(data["method"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SnapshotError(f"the snapshot is malformed: {exc}", code="S001") from None
        if snap.method != METHOD:
            raise SnapshotError(
                f"unknown snapshot method `{snap.method}`",
                code="S002",
                hint=f"rebuild the snapshot; this engine computes `{METHOD}`",
            )
        return snap

    def _fitting(self, score: str, definition: str, what: str) -> ScoreCuts:
        """The cuts of ``score`` if this snapshot has them for that score definition."""
        cuts = self.scores.get(score)
        if cuts is None or (what == "population statistics" and not cuts.metrics):
            raise SnapshotError(
                f"snapshot `{self.id}` has no {what} for score `{score}`",
                code="S003",
                hint="rebuild the snapshot with `charter snapshot`",
            )
        if cuts.definition != definition:
            raise SnapshotError(
                f"snapshot `{self.id}` was computed with another definition of score `{score}`",
                code="S004",
                hint="the score changed since; rebuild the snapshot with `charter snapshot`",
            )
        return cuts

    def metric_cuts(self, score: str, definition: str) -> dict[str, dict[float, float]]:
        """The population cut points a ranking scorer needs; raises if the snapshot does not fit."""
        return self._fitting(score, definition, "population statistics").metrics

    def cut(self, score: str, percentile: float, definition: str) -> float:
        """The cut point of ``score`` at ``percentile``; raises if the snapshot does not fit."""
        cuts = self._fitting(score, definition, "cut points")
        if percentile not in cuts.cuts:
            raise SnapshotError(
                f"snapshot `{self.id}` has no cut point at percentile {percentile:g} of `{score}`",
                code="S005",
                hint="the bands changed since; rebuild the snapshot",
            )
        return cuts.cuts[percentile]


def _pct_key(p: float) -> str:
    return f"{p:g}"


class ScoreValues:
    """The values of one score over a population, for exact nearest-rank cut points in bounded memory.

    At most ``chunk`` values are in memory; each full chunk is sorted and spilled to a
    temporary file (deleted on ``close`` or when the object goes). ``cut_points`` then merges
    the sorted runs, reading each in blocks, and picks the ranks it needs.
    """

    BLOCK = 65_536

    def __init__(self, chunk: int = 1_000_000) -> None:
        self.chunk = max(1, chunk)
        self.buffer: array[float] = array("d")
        self.runs: list[IO[bytes]] = []
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def append(self, value: float) -> None:
        self.buffer.append(value)
        self.count += 1
        if len(self.buffer) >= self.chunk:
            self._spill()

    def _spill(self) -> None:
        run = tempfile.TemporaryFile(prefix="charter-scores-")  # noqa: SIM115  # kept open until close()
        array("d", sorted(self.buffer)).tofile(run)
        self.runs.append(run)
        self.buffer = array("d")

    def cut_points(self, percentiles: Iterable[float]) -> dict[float, float]:
        if not self.runs:
            return cut_points(self.buffer, percentiles)
        n = self.count
        if self.buffer:
            self._spill()
        wanted: dict[int, list[float]] = {}
        for p in percentiles:
            wanted.setdefault(min(int(p / 100.0 * n), n - 1), []).append(p)
        out: dict[float, float] = {}
        last = max(wanted)
        for rank, value in enumerate(heapq.merge(*(self._read(run) for run in self.runs))):
            for p in wanted.get(rank, ()):
                out[p] = value
            if rank == last:
                break
        return out

    def _read(self, run: IO[bytes]) -> Iterator[float]:
        run.seek(0)
        while True:
            block: array[float] = array("d")
            try:
                block.fromfile(run, self.BLOCK)
            except EOFError:  # the last, shorter block: what was there is in `block`
                yield from block
                return
            yield from block

    def close(self) -> None:
        for run in self.runs:
            run.close()
        self.runs = []


def cut_points(values: array[float] | list[float], percentiles: Iterable[float]) -> dict[float, float]:
    """Nearest-rank cut points of ``values`` at each percentile (see the module docstring)."""
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        raise SnapshotError(
            "no customer could be scored, so there are no cut points",
            code="S006",
            hint="check that the customers have the facts the score reads",
        )
    return {p: ordered[min(int(p / 100.0 * n), n - 1)] for p in percentiles}


def save(snapshot: Snapshot, directory: str | Path) -> Path:
    """Store a snapshot content-addressed as ``<directory>/<id>.json``; returns the path."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{snapshot.id}.json"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(snapshot.canonical())
        tmp.replace(path)
    return path


def save_file(snapshot: Snapshot, path: str | Path) -> None:
    """Write a snapshot's canonical JSON to one file (to move it between stores by hand)."""
    Path(path).write_bytes(snapshot.canonical())


def load(path_or_id: str | Path, directory: str | Path | None = None) -> Snapshot:
    """Read a stored snapshot by path, or by id from ``directory``; checks its content hash."""
    path = Path(path_or_id)
    if not path.exists() and directory is not None:
        path = Path(directory) / f"{path_or_id}.json"
    try:
        data = json.loads(path.read_bytes())
    except OSError:
        raise SnapshotError(
            f"no snapshot `{path_or_id}`", code="S007", hint="build one with `charter snapshot`"
        ) from None
    except ValueError:
        raise SnapshotError(f"snapshot `{path_or_id}` is not valid JSON", code="S001") from None
    snap = Snapshot.from_dict(data)
    if path.stem.startswith("pop-") and path.stem != snap.id:
        raise SnapshotError(
            f"snapshot `{path.stem}` does not match its content (it hashes to `{snap.id}`)",
            code="S008",
            hint="the file was changed; rebuild it",
        )
    return snap


BLOB_KIND = "population"


def store_snapshot(snapshot: Snapshot, store: Store) -> str:
    """Keep a snapshot in a store, content-addressed; returns its id."""
    store.put_blob(BLOB_KIND, snapshot.id.removeprefix("pop-"), snapshot.canonical())
    return snapshot.id


def fetch_snapshot(snapshot_id: str, store: Store) -> Snapshot:
    """A snapshot from a store by id; the store checked its bytes against the id when it was put."""
    data = store.get_blob(BLOB_KIND, snapshot_id.removeprefix("pop-")) if snapshot_id.startswith("pop-") else None
    if data is None:
        raise SnapshotError(
            f"no snapshot `{snapshot_id}` in `{store.url}`",
            code="S007",
            hint="build one with `charter snapshot`, or pass the path of a snapshot file",
        )
    snap = Snapshot.from_dict(json.loads(data))
    if snap.id != snapshot_id:
        raise SnapshotError(f"snapshot `{snapshot_id}` does not match its content", code="S008")
    return snap
