"""What a logged decision depends on besides its own record, checked by ``charter log verify``.

A record replays only with the policy files it names (``bundle_blob``), the plugin set
(``plugins``), the population snapshot (``snapshot``) and, for its sealed values, the
customer's data key. The hash chain covers none of these: they are stored once, content
addressed, beside the records. ``Dependencies`` collects them from each record as verify
reads it (no second read of the log), then checks every one once:

* a blob missing from the store, or whose bytes no longer hash to its address (an edited
  message or threshold), is reported with the records that need it;
* a customer whose sealed values are in the log but whose key is gone is reported, unless
  the key was erased by ``charter log erase`` (which leaves an erasure mark, ``mark_erased``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.audit.protect import ERASURE_KIND, SEALED, mark_erased, was_erased
from engine.storage import Store

_KEYS_PER_QUERY = 500
_SHOWN = 5  # records named per problem; the count says how many in all


def _has_sealed(value: Any) -> bool:
    if isinstance(value, dict):
        return SEALED in value or any(_has_sealed(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_sealed(v) for v in value)
    return False


def _snapshots(body: Mapping[str, Any]) -> Iterator[str]:
    snap = body.get("snapshot")
    if isinstance(snap, str):
        yield snap
    for up in body.get("upstream") or ():
        if isinstance(up, Mapping):
            yield from _snapshots(up)


@dataclass
class Dependencies:
    """The blobs and keys the records read so far depend on, by the records (numbers) needing them."""

    blobs: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    sealed: dict[str, list[int]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    checked_blobs: int = 0
    checked_keys: int = 0

    def watch(self, records: Iterable[tuple[int, dict[str, Any]]]) -> Iterator[tuple[int, dict[str, Any]]]:
        """``records`` (seq, parsed record) passed through, noting what each depends on."""
        for seq, rec in records:
            self.note(int(rec.get("n", seq)), rec)
            yield seq, rec

    def note(self, n: int, rec: Mapping[str, Any]) -> None:
        try:
            body = json.loads(rec["body"]) if isinstance(rec.get("body"), str) else rec.get("body")
        except ValueError:
            return  # the chain check reports a record that is not one
        if not isinstance(body, Mapping):
            return
        for kind, key in (("bundle", "bundle_blob"), ("plugins", "plugins")):
            digest = body.get(key)
            if isinstance(digest, str):
                self.blobs.setdefault((kind, digest), []).append(n)
        for snap in set(_snapshots(body)):
            self.blobs.setdefault(("population", snap.removeprefix("pop-")), []).append(n)
        subject = body.get("subject")
        if isinstance(subject, str) and (_has_sealed(body.get("facts")) or _has_sealed(body.get("upstream"))):
            self.sealed.setdefault(str(subject), []).append(n)

    def check(self, store: Store) -> list[str]:
        """Every dependency looked up once; the problems found, each with the records affected."""
        for (kind, digest), needed in sorted(self.blobs.items()):
            data = store.get_blob(kind, digest)
            self.checked_blobs += 1
            what = f"{'snapshot pop-' if kind == 'population' else kind + ' blob '}{digest[:12]}…"
            if data is None:
                self.problems.append(f"{what} is missing from the store: {_records(needed)} cannot be replayed")
            elif hashlib.sha256(data).hexdigest() != digest:
                self.problems.append(
                    f"{what} was altered (its bytes no longer hash to its address): {_records(needed)} depend on it"
                )
        subjects = sorted(self.sealed)
        for i in range(0, len(subjects), _KEYS_PER_QUERY):
            chunk = subjects[i : i + _KEYS_PER_QUERY]
            found = store.get_keys([f"customer:{s}" for s in chunk])
            self.checked_keys += len(chunk)
            for s in chunk:
                if f"customer:{s}" not in found and not was_erased(store, s):
                    self.problems.append(
                        f"the data key of `{s}` is missing and was never erased (`charter log erase` leaves a mark): "
                        f"the sealed values of {_records(self.sealed[s])} cannot be opened"
                    )
        return self.problems


def _records(ns: list[int]) -> str:
    shown = ", ".join(f"#{n}" for n in ns[:_SHOWN])
    more = f" and {len(ns) - _SHOWN:,} more" if len(ns) > _SHOWN else ""
    return f"{len(ns):,} record(s) ({shown}{more})"


__all__ = ["ERASURE_KIND", "Dependencies", "mark_erased", "was_erased"]
