"""Signed checkpoints of the decision log's head: what a re-chained forgery cannot match.

The hash chain (``engine.audit.chain``) shows an edited record only to someone who kept a
later head: whoever can write the store can edit a record and re-hash every record after it,
and the chain verifies again. A checkpoint is the head at one moment — the record count ``n``
and the hash of record ``n`` — signed with an Ed25519 key that the store never holds (a
separate file from the log's data-sealing key). Verifying the log against checkpoints kept
outside the database fails if any record at or before a checkpoint's ``n`` was changed,
however the chain after it was rebuilt, and if records were cut off after a checkpoint.

A checkpoint is one line of JSON in a checkpoints file (JSON Lines, append-only)::

    {"v":1,"n":2500,"head":"2190…","time":"2026-12-03T14:00:00Z","key":"9f1c…","sig":"base64…"}

``key`` names the signing key (the first 16 hex digits of the SHA-256 of its raw public
key); ``sig`` is the signature of ``charter-checkpoint\\n`` followed by the canonical JSON of
the other fields. Checkpoints are written every ``every`` records by the writer that links
them (``Checkpointer``, wired into ``DecisionLog``) and on demand (``charter log
checkpoint``, which verifies the chain first and never signs a broken one).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from engine.audit.chain import ChainBroken, VerifyResult, canonical, checked
from engine.errors import CharterError

VERSION = 1
_DOMAIN = b"charter-checkpoint\n"  # what is signed starts with this: a signature means nothing else


class CheckpointError(CharterError):
    """A signing key, public key or checkpoints file cannot be used."""

    code = "H002"


# -- keys -----------------------------------------------------------------------------------------


def load_signing_key(path: str | Path, *, create: bool = False) -> Ed25519PrivateKey:
    """The Ed25519 signing key in ``path`` (PEM, PKCS #8). With ``create``, a missing file is
    made with a new key (mode 0600). A key file that its group or others may read or write is
    refused (H007), unless ``CHARTER_ALLOW_SHARED_KEY=1``."""
    p = Path(path)
    if not p.exists():
        if not create:
            raise CheckpointError(
                f"no signing key `{p}`", code="H003", hint="pass the checkpoint signing key (`--signing-key FILE`)"
            )
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        try:
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            return load_signing_key(p)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        return key
    mode = p.stat().st_mode & 0o777
    if mode & 0o077 and os.environ.get("CHARTER_ALLOW_SHARED_KEY") != "1":
        raise CheckpointError(
            f"the signing key `{p}` is open to its group or others (mode {mode:04o})",
            code="H007",
            hint=f"make it its owner's only: `chmod 600 {p}` (or set CHARTER_ALLOW_SHARED_KEY=1 to accept it)",
        )
    loaded: Any
    try:
        loaded = serialization.load_pem_private_key(p.read_bytes(), password=None)
    except (ValueError, TypeError, OSError):
        loaded = None
    if not isinstance(loaded, Ed25519PrivateKey):
        raise CheckpointError(
            f"`{p}` is not an Ed25519 private key in PEM", code="H004", hint="`charter log checkpoint` makes one"
        )
    return loaded


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    """The Ed25519 public key in ``path`` (PEM), or the public half of a signing key file."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as err:
        raise CheckpointError(f"cannot read the public key `{p}`: {err.strerror}", code="H003") from None
    key: Any
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            key = None
        key = key.public_key() if isinstance(key, Ed25519PrivateKey) else None
    if not isinstance(key, Ed25519PublicKey):
        raise CheckpointError(
            f"`{p}` is not an Ed25519 public key in PEM",
            code="H004",
            hint="`charter log public-key` writes the public key of the signing key",
        )
    return key


def public_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


# -- checkpoints ----------------------------------------------------------------------------------


def sign(key: Ed25519PrivateKey, n: int, head: str, time: datetime) -> dict[str, Any]:
    """The signed checkpoint of a log whose record ``n`` has hash ``head``."""
    stamp = time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    payload: dict[str, Any] = {"v": VERSION, "n": n, "head": head, "time": stamp, "key": key_id(key)}
    return {**payload, "sig": base64.b64encode(key.sign(_DOMAIN + canonical(payload))).decode()}


def signature_problem(cp: dict[str, Any], keys: Sequence[Ed25519PublicKey]) -> str | None:
    """Why ``cp`` is not a checkpoint signed by one of ``keys``; None when it is."""
    payload = {k: v for k, v in cp.items() if k != "sig"}
    trusted = {key_id(k): k for k in keys}
    key = trusted.get(str(cp.get("key")))
    if key is None:
        return f"signed by key `{cp.get('key')}`, which is not a trusted key"
    try:
        key.verify(base64.b64decode(str(cp.get("sig", "")), validate=True), _DOMAIN + canonical(payload))
    except (InvalidSignature, ValueError):
        return "its signature does not verify: the checkpoint was altered"
    return None


def read_checkpoints(path: str | Path) -> list[dict[str, Any]]:
    """The checkpoints in a checkpoints file, in file order."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise CheckpointError(f"cannot read the checkpoints `{p}`: {err}", code="H005") from None
    out = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            cp = json.loads(line)
            ok = isinstance(cp, dict) and isinstance(cp.get("n"), int) and isinstance(cp.get("head"), str)
        except ValueError:
            ok = False
        if not ok:
            raise CheckpointError(
                f"{p}:{i}: not a checkpoint",
                code="H005",
                hint="each line is one checkpoint as `charter log checkpoint` writes it",
            )
        out.append(cp)
    return out


def append_line(path: str | Path, entry: dict[str, Any]) -> None:
    """Add ``entry`` as a line of JSON to a file of them (checkpoints, approvals), durably;
    several writers may append at once."""
    line = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)  # one write of one line with O_APPEND: lines of several writers never mix
        os.fsync(fd)
    finally:
        os.close(fd)


class Checkpointer:
    """Writes a signed checkpoint to ``path`` each time the log passes a multiple of ``every``
    records, and on ``flush``. Given to ``DecisionLog``; thread-safe."""

    def __init__(self, path: str | Path, key: Ed25519PrivateKey, *, every: int = 10_000) -> None:
        self.path = Path(path)
        self.key = key
        self.every = max(1, every)
        self._last: tuple[int, str] | None = None  # the newest head seen
        self._written = 0  # n of the newest checkpoint written
        self._lock = threading.Lock()

    def linked(self, n: int, head: str) -> None:
        """The writer linked records up to ``n``, whose hash is ``head``."""
        with self._lock:
            if self._last is None or n > self._last[0]:
                self._last = (n, head)
            if n // self.every > self._written // self.every:
                self._write(n, head)

    def flush(self) -> dict[str, Any] | None:
        """A checkpoint of the newest head seen, unless one was written for it already."""
        with self._lock:
            if self._last is None or self._last[0] == self._written:
                return None
            return self._write(*self._last)

    def _write(self, n: int, head: str) -> dict[str, Any]:
        cp = sign(self.key, n, head, datetime.now(UTC))  # when it was signed: not a decision's clock
        append_line(self.path, cp)
        self._written = max(self._written, n)
        return cp


# -- verifying ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointResult:
    chain: VerifyResult
    checked: int  # checkpoints that hold
    problem: str = ""  # the first that does not, in words

    @property
    def ok(self) -> bool:
        return self.chain.ok and not self.problem


def verify_checkpoints(
    records: Iterable[tuple[int, bytes]],
    checkpoints: Sequence[dict[str, Any]],
    keys: Sequence[Ed25519PublicKey],
    observe: Callable[[int, dict[str, Any]], None] | None = None,
) -> CheckpointResult:
    """Check the chain, then that it holds every checkpoint: each signed by a trusted key, each
    ``head`` the hash of record ``n``. Checkpoints are checked in order of ``n``."""
    for i, cp in enumerate(checkpoints, 1):
        problem = signature_problem(cp, keys)
        if problem is not None:
            return CheckpointResult(VerifyResult(True, 0, ""), 0, f"checkpoint {i} (record {cp.get('n')}): {problem}")
    wanted = {int(cp["n"]) for cp in checkpoints}
    hashes: dict[int, str] = {}
    prev, count = "0" * 64, 0
    chain = None
    try:
        for _, rec in checked(records):
            prev, count = str(rec["hash"]), int(rec["n"])
            if count in wanted:
                hashes[count] = prev
            if observe is not None:
                observe(count, rec)
    except ChainBroken as broken:
        chain = broken.result
    if chain is None:
        chain = VerifyResult(True, count, prev)
    held, last_good = 0, 0
    for cp in sorted(checkpoints, key=lambda c: int(c["n"])):
        n = int(cp["n"])
        if n > chain.count and chain.ok:
            return CheckpointResult(
                chain,
                held,
                f"the log has {chain.count} record(s) but a checkpoint signed at {cp['time']} covers {n}: "
                "records were cut off the end",
            )
        if n > chain.count:
            break  # past the break the chain check already reports
        if hashes.get(n) != cp["head"]:
            return CheckpointResult(
                chain,
                held,
                f"record {n} is not the record signed at {cp['time']}: a record from {last_good + 1} to {n} "
                "was changed and the chain after it rebuilt",
            )
        held, last_good = held + 1, n
    return CheckpointResult(chain, held)


__all__ = [
    "CheckpointError",
    "CheckpointResult",
    "Checkpointer",
    "append_line",
    "key_id",
    "load_public_key",
    "load_signing_key",
    "public_pem",
    "read_checkpoints",
    "sign",
    "signature_problem",
    "verify_checkpoints",
]
