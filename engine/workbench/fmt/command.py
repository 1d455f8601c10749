"""Formatting one file, checked; the files named and the ``charter fmt`` command.

``format_document`` runs the steps (``source``, ``layout``, ``comments``) on one loaded file;
``check`` refuses the result, located, unless it keeps every comment and means the same.
``run`` formats the files named and writes each changed one atomically (``write_atomic``).
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import os
import re
import stat
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from engine.core.load import DocPath, Document, load_file, load_text, policy_files
from engine.errors import CharterError, Location, PolicyError, PolicyErrors
from engine.workbench.fmt.comments import assemble, attach
from engine.workbench.fmt.layout import dump
from engine.workbench.fmt.order import key_order
from engine.workbench.fmt.source import Note, entries, scan

DEFAULT_PATH = "policies"
BUG = "the file was left as it is; this is a bug in `charter fmt`, please report it with the file"

# --------------------------------------------------------------------------------------------
# formatting one file, checked
# --------------------------------------------------------------------------------------------


def format_document(doc: Document) -> str:
    """The canonical text of a loaded policy file. Raises ``PolicyErrors`` when it cannot be made safely."""
    text = doc.raw.decode("utf-8")
    try:
        found = entries(text)
        if not found:
            return text  # a lone scalar or an empty mapping: nothing to order
        notes = scan(text)
        result = assemble(dump(text, _kind(doc)), attach(notes, found))
    except yaml.MarkedYAMLError as exc:  # PyYAML's loader can be more lenient than its bare scanner (tabs)
        mark = exc.problem_mark or exc.context_mark
        where = Location(doc.path, mark.line + 1, mark.column + 1) if mark else Location(doc.path, 1, 1)
        hint = "the file was left as it is; check the spacing on this line: tabs, for example"
        raise PolicyErrors(
            [PolicyError(f"cannot format this file: {exc.problem}", where, code="P901", hint=hint)]
        ) from None
    except Exception as exc:  # ruamel.yaml, or a bug here: this file is refused and the run goes on
        detail = f" ({type(exc).__name__}: {exc})"
        raise _refused("cannot format this file", Location(doc.path, 1, 1), "P901", detail) from None
    check(doc, result, notes)
    return result


def format_text(text: str, path: str = "<policy>") -> str:
    """The canonical text of a policy file's text. Raises ``PolicyErrors`` (located) instead of changing meaning."""
    return format_document(load_text(text.encode("utf-8"), path))


def check(doc: Document, formatted: str, notes: list[Note] | None = None) -> None:
    """Raise ``PolicyErrors`` unless ``formatted`` keeps every comment of ``doc`` and means the same."""
    try:
        new = load_text(formatted.encode("utf-8"), doc.path)
    except PolicyErrors as exc:
        message = f"formatting would break the file: {exc.errors[0].message}"
        raise _refused(message, Location(doc.path, 1, 1), "P903") from None
    try:
        kept = Counter(n.text for n in scan(formatted) if n.text)
    except yaml.YAMLError as exc:
        raise _refused(f"formatting would break the file: {exc}", Location(doc.path, 1, 1), "P903") from None
    for note in notes if notes is not None else scan(doc.raw.decode("utf-8")):
        if note.text and kept[note.text] <= 0:
            where = Location(doc.path, note.line + 1, note.column + 1)
            raise _refused(f"formatting would lose the comment `{note.text}`", where, "P902")
        kept[note.text] -= 1
    extra = next((text for text, n in kept.items() if text and n > 0), None)
    if extra is not None:
        raise _refused(f"formatting would repeat the comment `{extra}`", Location(doc.path, 1, 1), "P902")
    path = difference(doc.data, new.data, _kind(doc))
    if path is not None:
        shown = Location(doc.path, path=path).dotted_path()
        raise _refused(
            f"formatting would change {f'`{shown}`' if shown else 'the document'}", doc.location(path), "P904"
        )


def _kind(doc: Document) -> str | None:
    kind = doc.data.get("kind") if isinstance(doc.data, dict) else None
    return kind if isinstance(kind, str) else None


def _refused(message: str, where: Location, code: str, detail: str = "") -> PolicyErrors:
    return PolicyErrors([PolicyError(message, where, code=code, hint=BUG + detail)])


def difference(a: Any, b: Any, kind: str | None, path: DocPath = ()) -> DocPath | None:
    """The first path where two loaded documents differ in value, type or order of user-named keys."""
    if type(a) is not type(b):
        return path
    if isinstance(a, dict):
        if set(a) != set(b) or (key_order(kind, path) is None and list(a) != list(b)):
            return path
        found = (difference(a[k], b[k], kind, (*path, k)) for k in a)
        return next((d for d in found if d is not None), None)
    if isinstance(a, list):
        if len(a) != len(b):
            return path
        found = (difference(x, y, kind, (*path, i)) for i, (x, y) in enumerate(zip(a, b, strict=True)))
        return next((d for d in found if d is not None), None)
    same = a == b or (isinstance(a, float) and a != a and b != b)  # NaN equals itself here
    return None if same else path


# --------------------------------------------------------------------------------------------
# files and the command
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Formatted:
    """One file: its text as it is and as ``charter fmt`` writes it."""

    path: Path
    before: str
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def diff(self) -> str:
        """A unified diff from the file as it is to its formatted text."""
        name = str(self.path)
        lines = difflib.unified_diff(_lines(self.before), _lines(self.after), name, name)
        return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)


def _lines(text: str) -> list[str]:
    return [line for line in re.split(r"(?<=\n)", text) if line]


def format_file(path: Path) -> Formatted:
    """Format one policy file without writing it. Raises ``PolicyErrors``, located."""
    doc = load_file(path, display=str(path))
    return Formatted(path, doc.raw.decode("utf-8"), format_document(doc))


def collect(paths: Sequence[str]) -> list[Path]:
    """The policy files named: files as given, directories by their ``*.yaml`` and ``*.yml`` files."""
    files: dict[Path, Path] = {}
    for name in paths:
        p = Path(name)
        if p.is_dir():
            found = list(policy_files(p))
            if not found:
                raise CharterError(
                    f"no policy files in `{name}`", code="C021", hint="policy files end in `.yaml` or `.yml`"
                )
        elif p.is_file():
            found = [p]
        else:
            raise CharterError(
                f"`{name}` is not a file or directory",
                code="C020",
                hint=f"name policy files or the directories that hold them (default: `{DEFAULT_PATH}`)",
            )
        for f in found:
            files.setdefault(f.resolve(), f)
    return list(files.values())


def write_atomic(result: Formatted) -> None:
    """Replace the file with its formatted text: a temporary file beside it, then a rename; same mode."""
    where = Location(str(result.path))
    try:
        target = Path(os.path.realpath(result.path))
        if target.read_bytes() != result.before.encode("utf-8"):
            raise PolicyErrors(
                [PolicyError("the file changed while it was being formatted", where, code="P905", hint="run it again")]
            )
        mode = stat.S_IMODE(target.stat().st_mode)
        fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".fmt")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(result.after.encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())
            os.chmod(temp, mode)
            os.replace(temp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
    except OSError as exc:
        hint = "check the permissions of the file and its folder"
        raise PolicyErrors(
            [PolicyError(f"cannot write the file: {exc.strerror or exc}", where, code="P906", hint=hint)]
        ) from None


def run(args: argparse.Namespace) -> int:
    """``charter fmt``: exit 1 when a file was refused, or with ``--check`` when one would change."""
    changed = unchanged = refused = 0
    for path in collect(args.paths or [DEFAULT_PATH]):
        try:
            result = format_file(path)
            if result.changed and not (args.check or args.diff):
                write_atomic(result)
        except PolicyErrors as exc:
            refused += 1
            for err in exc.errors:
                print(err.describe(), file=sys.stderr)
            continue
        if not result.changed:
            unchanged += 1
            continue
        changed += 1
        if args.diff:
            sys.stdout.write(result.diff())
        if args.check:
            print(f"would reformat {path}")
        elif not args.diff:
            print(f"reformatted {path}")
    verb = "would be reformatted" if args.check or args.diff else "reformatted"
    summary = f"{changed} file(s) {verb}, {unchanged} unchanged"
    print(summary + (f", {refused} refused" if refused else ""), file=sys.stderr)
    return 1 if refused or (args.check and changed) else 0


def add_command(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "fmt",
        help="rewrite policy files in one canonical form, keeping every comment",
        description="Rewrite policy files in one canonical form: keys in the documented order, 2-space "
        "indentation, every comment kept next to what it annotates. A file whose meaning would change, "
        "or that has a YAML syntax error, is left as it is and reported.",
    )
    p.add_argument("paths", nargs="*", help=f"policy files or directories (default: {DEFAULT_PATH})")
    p.add_argument(
        "--check", action="store_true", help="write nothing; list the files that would change, exit 1 if any"
    )
    p.add_argument("--diff", action="store_true", help="write nothing; print a unified diff of what would change")
    p.set_defaults(run=run)
