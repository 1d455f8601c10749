"""Reading a policy set whole: never a file half-written by an editor or a deployment tool.

A directory holding a ``charter.manifest`` (``sha256sum`` lines, written last and renamed
into place) loads only when every policy file in it is listed and matches its hash. Without
one, files are read once each has been seen unchanged for ``settle`` seconds, and read again
if they changed while read (docs/deploying.md). Loading may read the clock and sleep:
evaluation never does.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from engine.core.bundle import read_sources
from engine.core.load import policy_files, read_policy_bytes
from engine.errors import Location, PolicyError, PolicyErrors

MANIFEST = "charter.manifest"  # in a policy directory: `sha256  file` per line, as sha256sum writes
DEFAULT_SETTLE = 0.5  # seconds a file must be left alone before a reload reads it (no manifest)
READ_ATTEMPTS = 3  # reads of files that changed while read, before a reload gives up on them
DEFER = 3  # a reload waits at most this many settle times for files to be left alone


# -- reading policy files whole ---------------------------------------------------------------

Stat = tuple[int, int, int, int, int]  # size, mtime_ns, ctime_ns, inode, device
_MANIFEST_LINE = re.compile(r"([0-9a-fA-F]{64}) [ *](.+)")


def read_policies(
    paths: Sequence[str | Path], *, settle: float = 0.0, quiet: QuietFiles | None = None
) -> list[tuple[str, bytes]]:
    """The (name, bytes) of every policy file named, each read whole, in the order named.

    A directory holding a ``charter.manifest`` gives exactly the files it lists, each with the
    hash it lists, or nothing. Other files are read once each has been seen unchanged (size,
    mtime, ctime, inode) for ``settle`` seconds, waiting for that if need be, and are looked at
    again after the read: one that changed meanwhile is read again. ``quiet`` remembers what
    earlier reads saw, so a file left alone since then is read without waiting. Raises
    ``PolicyErrors`` naming the file that is not whole.
    """
    manifested = {i for i, p in enumerate(paths) if Path(p).is_dir() and (Path(p) / MANIFEST).is_file()}
    plain = [p for i, p in enumerate(paths) if i not in manifested]
    errors: list[PolicyError] = []
    read: dict[int, list[tuple[str, bytes]]] = {}
    for i in manifested:
        try:
            read[i] = _read_manifested(Path(paths[i]))
        except PolicyErrors as exc:
            errors.extend(exc.errors)
    if plain:
        try:
            groups = iter(_read_settled(plain, settle, quiet if quiet is not None else QuietFiles()))
            for i in range(len(paths)):
                if i not in manifested:
                    read[i] = next(groups)
        except PolicyErrors as exc:
            errors.extend(exc.errors)
    if errors:
        raise PolicyErrors(errors)
    return [source for i in range(len(paths)) for source in read[i]]


def _read_manifested(directory: Path) -> list[tuple[str, bytes]]:
    """The policy files of ``directory``, as its manifest lists them, or ``PolicyErrors``."""
    manifest = directory / MANIFEST
    where = Location(str(manifest))
    hint = f"write the policy files first, then `{MANIFEST}` (to a temporary name, renamed into place)"
    try:
        text = manifest.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        error = PolicyError(f"cannot read `{MANIFEST}`: {reason}", where, code="C050", hint=hint)
        raise PolicyErrors([error]) from None
    listed: dict[str, tuple[str, int]] = {}
    errors: list[PolicyError] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        at = Location(str(manifest), n, 1)
        m = _MANIFEST_LINE.fullmatch(line.rstrip("\r"))
        name = m.group(2).removeprefix("./") if m else ""
        if m is None or "/" in name or "\\" in name or name in (".", ".."):
            what = "a line that is not `SHA256  FILE`" if m is None else f"`{name}` is not a file of this directory"
            errors.append(
                PolicyError(
                    f"{what} in `{MANIFEST}`",
                    at,
                    code="C050",
                    hint=f"write it as sha256sum does, in the policy directory: `sha256sum *.yaml > {MANIFEST}.tmp`",
                )
            )
        elif name in listed:
            errors.append(PolicyError(f"`{name}` is listed twice in `{MANIFEST}`", at, code="C050", hint=hint))
        else:
            listed[name] = (m.group(1).lower(), n)
    if errors:
        raise PolicyErrors(errors)
    present = [f.name for f in policy_files(directory)]
    for name in present:
        if name not in listed:
            errors.append(
                PolicyError(
                    f"`{name}` is not listed in `{MANIFEST}`, so the policies are not loaded",
                    Location(str(directory / name)),
                    code="C053",
                    hint=f"add its line (`sha256sum {name}`) to `{MANIFEST}`, or remove the file",
                )
            )
    sources: dict[str, tuple[str, bytes]] = {}
    for name, (digest, n) in listed.items():
        path = directory / name
        try:
            raw = read_policy_bytes(path)
        except PolicyErrors as exc:  # too big to read
            errors.extend(exc.errors)
            continue
        except OSError:
            errors.append(
                PolicyError(
                    f"`{name}`, listed in `{MANIFEST}`, is missing or cannot be read",
                    Location(str(manifest), n, 1),
                    code="C051",
                    hint=hint,
                )
            )
            continue
        if hashlib.sha256(raw).hexdigest() != digest:
            errors.append(
                PolicyError(
                    f"`{name}` does not match its sha256 in `{MANIFEST}`: the file is being written,"
                    " or the manifest is stale",
                    Location(str(path)),
                    code="C052",
                    related=Location(str(manifest), n, 1),
                    hint=hint,
                )
            )
        elif name in present:
            sources[name] = (str(path), raw)
    if errors:
        raise PolicyErrors(errors)
    return [sources[name] for name in present]


def _stat(path: Path) -> Stat | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def listing(paths: Sequence[str | Path], manifests: bool = False) -> dict[str, Stat | None]:
    """The stat of every policy file named (directories expanded; with ``manifests``, their
    manifests too); None for one that is not there."""
    out: dict[str, Stat | None] = {}
    for p in paths:
        path = Path(p)
        if not path.is_dir():
            out[str(path)] = _stat(path)
            continue
        try:
            files = list(policy_files(path))
        except OSError:  # gone meanwhile: reading it says so
            files = []
        if manifests:
            files.append(path / MANIFEST)
        for f in files:
            out[str(f)] = _stat(f)
    return out


class QuietFiles:
    """Since when each file has been seen with its present stat: how long it has been left
    alone, as far as this process has looked. Timestamps alone cannot say: while a file is
    being truncated it shows its new size with its old times."""

    LIMIT = 4096  # files remembered; the longest unseen are forgotten first

    def __init__(self) -> None:
        self._seen: dict[str, tuple[Stat, float]] = {}
        self._lock = threading.Lock()

    def wait(self, stats: Mapping[str, Stat | None], settle: float) -> tuple[float, str]:
        """Note what ``stats`` show; return how long until every file will have been seen
        unchanged for ``settle`` seconds (0: now), and the file that takes longest."""
        now = time.monotonic()
        wait, culprit = 0.0, ""
        with self._lock:
            for name, st in stats.items():
                if st is None:
                    continue
                seen = self._seen.pop(name, None)
                if seen is None or seen[0] != st:
                    seen = (st, now)
                self._seen[name] = seen  # the last seen go last: the first are forgotten first
                need = settle - (now - seen[1])
                if need > wait:
                    wait, culprit = need, name
            while len(self._seen) > self.LIMIT:
                self._seen.pop(next(iter(self._seen)))
        return min(wait, settle), culprit


def _read_settled(paths: Sequence[str | Path], settle: float, quiet: QuietFiles) -> list[list[tuple[str, bytes]]]:
    """Each path's policy files, read once none has changed for ``settle`` seconds (waiting
    at most ``DEFER`` times that) and none changed while they were read."""
    deadline = time.monotonic() + DEFER * settle
    reads = 0
    while True:
        before = listing(paths)
        wait, culprit = quiet.wait(before, settle)
        if wait > 0:
            reason = f"it changed less than {settle:g} s ago, and kept changing"
            if time.monotonic() + wait > deadline:
                break
            time.sleep(min(wait, settle / 8))  # looks again soon: a change meanwhile restarts its wait
            continue
        out: list[list[tuple[str, bytes]]] = []
        errors: list[PolicyError] = []
        for p in paths:
            try:
                out.append(read_sources([p]))
            except PolicyErrors as exc:
                errors.extend(exc.errors)
        after = listing(paths)
        if after == before:
            if errors:
                raise PolicyErrors(errors)
            return out
        quiet.wait(after, settle)
        culprit = next(name for name in sorted(set(before) | set(after)) if before.get(name) != after.get(name))
        reason = "it changed while it was being read"
        reads += 1
        if reads >= READ_ATTEMPTS:
            break
    raise PolicyErrors(
        [
            PolicyError(
                f"`{Path(culprit).name}` is still being written: {reason}",
                Location(culprit),
                code="C054",
                hint="reload once it is saved; tools should write a temporary file and rename it into place,"
                f" or write a `{MANIFEST}` last (docs/deploying.md)",
            )
        ]
    )
