"""Approved policy bundles: a bundle serves only once enough distinct approvers signed it.

The guidelines ask for three reviews before a change takes effect. An approval is one line of
``charter.approvals.jsonl`` in the policy directory::

    {"v":1,"bundle":"b-…","approver":"alice","time":"2026-12-03T15:00:00.000000Z","key":"9f1c…","sig":"…"}

signed with the approver's Ed25519 key over ``charter-approval\\n`` and the canonical JSON of
the other fields. ``bundle`` is the bundle version, the content hash of every policy file
(``engine.core.bundle``): an approval holds for exactly those bytes, and any edit to any
file leaves every approval stale. The approvals file itself is not a policy file: adding an
approval does not change the version it approves.

An engine given an ``ApprovalPolicy`` (the approvers it trusts, each a name and a public
key, and how many must approve) refuses at load and at every reload a bundle with fewer
valid approvals by distinct trusted approvers, with a located error that lists what is
wrong with each approval that did not count; a refused reload leaves the old bundle serving.
The approvals that let a bundle in are kept with it (``Bundle.approvals``) and stored in
the decision log's bundle blob, so every decision records who approved the policies it
used.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from engine.audit.chain import canonical
from engine.audit.checkpoint import key_id, load_public_key
from engine.errors import Location, PolicyError, PolicyErrors

APPROVALS_FILE = "charter.approvals.jsonl"
VERSION = 1
_DOMAIN = b"charter-approval\n"  # what is signed starts with this: an approval means nothing else
_HINT = "each approver runs `charter bundle sign DIR --approver NAME --key FILE` on the files as they are now"


@dataclass(frozen=True)
class ApprovalPolicy:
    """Who may approve (approver name -> public key) and how many distinct approvers must."""

    trusted: Mapping[str, Ed25519PublicKey]
    required: int = 3

    @classmethod
    def from_directory(cls, directory: str | Path, required: int = 3) -> ApprovalPolicy:
        """The approvers' public keys as ``NAME.pem`` files in ``directory``."""
        d = Path(directory)
        if not d.is_dir():
            raise PolicyErrors(
                [PolicyError(f"`{d}` is not a directory of approvers' keys", Location(str(d)), code="P031")]
            )
        return cls({p.stem: load_public_key(p) for p in sorted(d.glob("*.pem"))}, required)


def approve(key: Ed25519PrivateKey, approver: str, version: str, time: datetime) -> dict[str, Any]:
    """``approver``'s signed approval of the bundle ``version``."""
    stamp = time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    payload: dict[str, Any] = {"v": VERSION, "bundle": version, "approver": approver, "time": stamp, "key": key_id(key)}
    return {**payload, "sig": base64.b64encode(key.sign(_DOMAIN + canonical(payload))).decode()}


def approvals_file(paths: Sequence[str | Path]) -> Path | None:
    """Where the approvals of a policy set are kept: in its (first) directory, or beside its
    first file; None for no paths."""
    if not paths:
        return None
    first = Path(paths[0])
    return (first if first.is_dir() else first.parent) / APPROVALS_FILE


def read_approvals(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line, approval) for each line of an approvals file; none when there is no file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as err:
        error = PolicyError(f"cannot read the approvals: {err}", Location(str(path)), code="P032")
        raise PolicyErrors([error]) from None
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ("bundle", "approver", "sig")):
            raise PolicyErrors(
                [PolicyError("this line is not an approval", Location(str(path), i, 1), code="P032", hint=_HINT)]
            )
        out.append((i, entry))
    return out


@dataclass
class Review:
    """The approvals of one bundle version: those that count, and why each other one does not."""

    valid: list[dict[str, Any]] = field(default_factory=list)
    problems: list[tuple[int, str]] = field(default_factory=list)  # (line, why it does not count)


def review(entries: Sequence[tuple[int, dict[str, Any]]], version: str, policy: ApprovalPolicy) -> Review:
    out = Review()
    seen: set[str] = set()
    for line, entry in entries:
        approver = entry["approver"]
        key = policy.trusted.get(approver)
        payload = {k: v for k, v in entry.items() if k != "sig"}
        problem = None
        if entry["bundle"] != version:
            problem = f"`{approver}` approved bundle `{entry['bundle']}`: the files changed after it was signed"
        elif key is None:
            problem = f"`{approver}` is not a trusted approver"
        elif entry.get("key") != key_id(key):
            problem = f"`{approver}`'s approval is signed with another key than the one trusted for them"
        elif approver in seen:
            problem = f"`{approver}` approved twice: counted once"
        else:
            try:
                key.verify(base64.b64decode(entry["sig"], validate=True), _DOMAIN + canonical(payload))
            except (InvalidSignature, ValueError):
                problem = f"`{approver}`'s signature does not verify: the approval was altered"
        if problem is None:
            seen.add(approver)
            out.valid.append(entry)
        else:
            out.problems.append((line, problem))
    return out


def require_approvals(version: str, paths: Sequence[str | Path], policy: ApprovalPolicy) -> tuple[dict[str, Any], ...]:
    """The approvals that let bundle ``version`` serve; ``PolicyErrors`` when fewer than
    ``policy.required`` distinct trusted approvers signed it."""
    path = approvals_file(paths)
    entries = read_approvals(path) if path is not None else []
    found = review(entries, version, policy)
    if len(found.valid) >= policy.required:
        return tuple(found.valid)
    where = str(path) if path is not None else "(no policy directory)"
    errors = [
        PolicyError(
            f"bundle `{version}` has {len(found.valid)} of the {policy.required} approvals it needs"
            + (f" (approved by {', '.join(e['approver'] for e in found.valid)})" if found.valid else ""),
            Location(where),
            code="P030",
            hint=_HINT,
        )
    ]
    errors += [PolicyError(why, Location(where, line, 1), code="P033", hint=_HINT) for line, why in found.problems]
    raise PolicyErrors(errors)


__all__ = [
    "APPROVALS_FILE",
    "ApprovalPolicy",
    "Review",
    "approvals_file",
    "approve",
    "read_approvals",
    "require_approvals",
    "review",
]
