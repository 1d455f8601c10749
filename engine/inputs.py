"""Reading what callers hand the engine: customers' facts and the time of decision.

Facts come as JSON (one object or an array of them), JSON Lines or CSV, from a file or,
for ``-``, from standard input. ``parse_now`` reads the caller's ``now``. The command
line, the workbench and later the HTTP service all read their input through here, so
they accept the same formats and report the same errors.

The readers are line-tolerant: a line or row that cannot be read (not JSON, not UTF-8, a
lone surrogate escape, a CSV row whose cells do not match the header) is yielded in its
place as an ``UnreadableRecord``, which names the file, the line (and column or field) and
refuses with ``FactErrors`` as soon as the engine reads it. The rest of the file is read and
decided: ``Engine.evaluate_batch`` yields that error in the record's place and goes on. Only
a file that cannot be read at all (missing, a directory, empty, nested too deep) raises.
A byte-order mark (a file saved by Excel) is accepted; a CSV file separated by `;`, a tab or
`|` is read with its own separator.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import sys
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from engine.core.model import FactDecl
from engine.errors import CharterError, FactError, FactErrors

BOM = b"\xef\xbb\xbf"
SHOWN = 80  # characters of a bad line or value an error quotes, at most
_SURROGATE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_DELIMITERS = (",", ";", "\t", "|")

# --------------------------------------------------------------------------------------------
# a record that could not be read
# --------------------------------------------------------------------------------------------


class UnreadableRecord(dict[str, Any]):
    """A line or row that could not be read, in its place in the stream.

    It is an (empty) dict so that it travels through ``Engine.evaluate_batch`` like any
    record: reading it (as the engine's boundary does first) raises its ``FactErrors``, which
    the batch yields in its place before deciding the next record.
    """

    def __init__(self, error: FactError) -> None:
        super().__init__()
        self.error = FactErrors([error])

    def __contains__(self, key: object) -> bool:
        raise self.error

    def __getitem__(self, key: str) -> Any:
        raise self.error

    def __iter__(self) -> Iterator[str]:
        raise self.error

    def __len__(self) -> int:
        raise self.error

    def get(self, key: str, default: Any = None) -> Any:
        raise self.error

    def keys(self) -> Any:
        raise self.error

    def values(self) -> Any:
        raise self.error

    def items(self) -> Any:
        raise self.error


def cut(text: str, limit: int = SHOWN) -> str:
    """``text`` as an error quotes it: at most ``limit`` characters, then how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text):,} characters)"


def _unreadable(
    source: str, line: int, message: str, *, code: str, hint: str, column: int = 0, field: str = "", value: Any = None
) -> UnreadableRecord:
    where = _name(source)
    place = f"line {line}" + (f", column {column}" if column else "")
    return UnreadableRecord(
        FactError(
            f"{where} {place}: {message}",
            field=field,
            value=value,
            rule="readable",
            hint=hint,
            code=code,
            source=source,
            line=line,
            column=column,
        )
    )


def _name(source: str) -> str:
    return "standard input" if source == "-" else f"`{source}`"


# --------------------------------------------------------------------------------------------
# reading facts: JSON (one object or an array), JSON Lines, CSV; `-` is standard input
# --------------------------------------------------------------------------------------------


def read_facts(
    source: str,
    fmt: str = "auto",
    declared: Mapping[str, FactDecl] | None = None,
    *,
    lines: deque[int] | None = None,
) -> Iterator[dict[str, Any]]:
    """Stream customers from a file or stdin. JSON Lines and CSV never load the whole file.

    CSV cells are text; a cell of a fact declared as a number, integer, boolean or list is
    read as JSON (`12.5`, `true`, `["a"]`), so the fact checker sees the intended type. An
    empty cell is an absent fact. A line or row that cannot be read is an ``UnreadableRecord``
    in its place (see the module's docstring). ``lines``: the line each record starts on is
    appended to it as the record is read (a caller pops them as it decides, so that an error
    about a record's facts can name its line).
    """
    stream = _open(source)
    where = _Where()
    try:
        for record in _records(source, fmt, declared, stream, where):
            if lines is not None:
                lines.append(where.line)
            yield record
    except OSError as exc:
        raise CharterError(f"cannot read {_name(source)}: {exc.strerror}", code="C004") from None
    finally:
        if stream is not sys.stdin and stream is not getattr(sys.stdin, "buffer", None):
            stream.close()


def _open(source: str) -> IO[bytes]:
    if source == "-":
        buffer = getattr(sys.stdin, "buffer", None)
        if buffer is not None:
            return buffer  # type: ignore[no-any-return]
        return io.BytesIO(sys.stdin.read().encode("utf-8", "surrogateescape"))  # a text stream (tests)
    try:
        return open(source, "rb")  # closed by read_facts
    except OSError as exc:
        reason = "it is a directory" if Path(source).is_dir() else (exc.strerror or str(exc)).lower()
        raise CharterError(
            f"cannot read `{source}`: {reason}", code="C004", hint="give a .json, .jsonl or .csv file, or - for stdin"
        ) from None


class _Where:
    """The line the record a reader is about to yield starts on (set before each yield)."""

    __slots__ = ("line",)

    def __init__(self) -> None:
        self.line = 0


def _records(
    source: str, fmt: str, declared: Mapping[str, FactDecl] | None, stream: IO[bytes], where: _Where
) -> Iterator[dict[str, Any]]:
    if fmt == "auto":
        fmt = _guess_format(source)
    if fmt == "csv":
        typed = {n for n, d in (declared or {}).items() if d.type not in ("string", "timestamp")}
        yield from _csv_records(source, stream, typed, where)
    elif fmt == "jsonl":
        yield from _jsonl_records(source, stream, where)
    else:
        yield from _json_records(source, stream.read(), where)


def _guess_format(source: str) -> str:
    suffix = Path(source).suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    if suffix == ".json":
        return "json"
    return "jsonl"


# -- JSON Lines --------------------------------------------------------------------------------


def _jsonl_records(source: str, stream: IO[bytes], where: _Where) -> Iterator[dict[str, Any]]:
    for n, raw in enumerate(stream, 1):
        where.line = n
        if n == 1 and raw.startswith(BOM):
            raw = raw[len(BOM) :]
        text = _decoded(source, n, raw)
        if isinstance(text, UnreadableRecord):
            yield text
        elif text.strip():
            yield _json_line(source, n, text)


def _decoded(source: str, n: int, raw: bytes) -> str | UnreadableRecord:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        column = len(raw[: exc.start].decode("utf-8", "replace")) + 1
        return _unreadable(
            source,
            n,
            f"is not UTF-8 text: byte `\\x{raw[exc.start]:02x}` cannot be read",
            code="C005",
            column=column,
            hint="save the file as UTF-8 (with or without a byte-order mark)",
        )


def _json_line(source: str, n: int, text: str) -> dict[str, Any]:
    try:
        value = _loads(text.rstrip("\r\n"))
    except _NotJson as exc:
        return _unreadable(source, n + exc.line - 1, exc.message, code=exc.code, column=exc.column, hint=exc.hint)
    if not isinstance(value, dict):
        return _unreadable(
            source,
            n,
            f"is a JSON {_kind(value)}, not an object: `{cut(text.strip(), 40)}`",
            code="C001",
            hint='each line must be one JSON object, like `{"id": "C1", ...}`',
        )
    return _checked(source, n, value, text)


def _checked(source: str, n: int, value: dict[str, Any], text: str) -> dict[str, Any]:
    """``value``, or its error when it holds a lone surrogate escape (UTF-8 cannot hold it)."""
    if _SURROGATE.search(text):
        field = _surrogate_at(value, "")
        if field is not None:
            return _unreadable(
                source,
                n,
                f"`{field or 'a key'}` holds a lone surrogate escape (half of a `\\uD83D\\uDE00` pair)",
                code="C007",
                field=field,
                hint="write the character itself, or both halves of its escape pair",
            )
    return value


def _surrogate_at(value: Any, path: str) -> str | None:
    """The path of the first string (or key) holding a lone surrogate, or None."""
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            if not _encodable(item):
                return where
        elif isinstance(item, dict):
            for key, inner in item.items():
                inner_path = f"{where}.{key}" if where else str(key)
                if not _encodable(str(key)):
                    return where
                stack.append((inner_path, inner))
        elif isinstance(item, list):
            stack.extend((f"{where}[{i}]", inner) for i, inner in enumerate(item))
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    return "boolean" if isinstance(value, bool) else "number"


# -- one JSON text ---------------------------------------------------------------------------------


class _NotJson(Exception):
    def __init__(self, message: str, line: int, column: int, *, code: str = "C001", hint: str = "") -> None:
        super().__init__(message)
        self.message, self.line, self.column, self.code = message, line, column, code
        self.hint = hint or "each line must be one whole JSON object, its brackets and quotes closed"


def _constant(name: str) -> Any:
    raise _NotJson(
        f"`{name}` is not a JSON number", 1, 0, code="C009", hint="write a number, or `null` when there is none"
    )


def _float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _NotJson(
            f"the number `{cut(text, 40)}` is too large", 1, 0, code="C009", hint="write a number below 1e308"
        )
    return value


def _int(text: str) -> int:
    if len(text) > 40:  # past any amount a policy compares; Python refuses 4,300 digits anyway
        raise _NotJson(
            f"the number `{cut(text, 20)}` has {len(text):,} digits",
            1,
            0,
            code="C009",
            hint="write a number of at most 40 digits",
        )
    return int(text)


def _loads(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=_constant, parse_float=_float, parse_int=_int)
    except json.JSONDecodeError as exc:
        raise _NotJson(f"not valid JSON: {_plain_json_error(exc)}", exc.lineno, exc.colno) from None
    except RecursionError:
        raise _NotJson(
            "not valid JSON: brackets nested too deep", 1, 0, hint="facts nest a few levels at most"
        ) from None


def _plain_json_error(exc: json.JSONDecodeError) -> str:
    """The decoder's reason in the officer's words."""
    msg = exc.msg
    if exc.pos >= len(exc.doc.rstrip()) or msg.startswith("Unterminated string"):
        return "the line ends before its JSON is complete (cut short?)"
    words = {
        "Expecting property name enclosed in double quotes": "a key must be in double quotes (or a `,` is extra)",
        "Expecting ',' delimiter": "a `,` is missing",
        "Expecting ':' delimiter": "a `:` is missing after the key",
        "Expecting value": "a value is missing or is not JSON (text goes in double quotes)",
        "Extra data": "something follows the end of the JSON object",
        "Invalid control character at": "a control character (a tab or a line break) inside a string",
        "Invalid \\escape": "a `\\` that starts no escape (write `\\\\`)",
        "Invalid \\uXXXX escape": "a `\\u` escape without four hexadecimal digits",
    }
    return next((said for start, said in words.items() if msg.startswith(start)), msg.lower())


# -- a .json file: one object or an array -------------------------------------------------------------


def _json_records(source: str, raw: bytes, where: _Where) -> Iterator[dict[str, Any]]:
    if raw.startswith(BOM):
        raw = raw[len(BOM) :]
    text = raw.decode("utf-8", "surrogateescape")  # a byte that is not UTF-8: its item's error
    body = text.strip()
    if not body:
        raise CharterError(
            f"{_name(source)} is empty", code="C001", hint="give one JSON object, or an array of them, like `[{...}]`"
        )
    if not body.startswith("["):
        value = _item(source, 1, text)
        if isinstance(value, UnreadableRecord):
            raise value.error.errors[0]
        where.line = 1
        yield value
        return
    yield from _json_array(source, text, where)


def _item(source: str, line: int, text: str) -> dict[str, Any]:
    """One JSON object of a .json file (``text`` of it, from ``line``), or its error."""
    first = next((i for i, ch in enumerate(text) if not _encodable(ch)), -1)
    if first < 0:
        return _json_line(source, line, text)
    char = ord(text[first])
    byte = f"byte `\\x{char - 0xDC00:02x}`" if 0xDC80 <= char <= 0xDCFF else "a character"
    return _unreadable(
        source,
        line + text.count("\n", 0, first),
        f"is not UTF-8 text: {byte} cannot be read",
        code="C005",
        column=first - text.rfind("\n", 0, first),
        hint="save the file as UTF-8 (with or without a byte-order mark)",
    )


def _json_array(source: str, text: str, where: _Where) -> Iterator[dict[str, Any]]:
    """The items of a JSON array one by one: those before a mistake are kept, the mistake is
    reported where it is (after it, nothing can be told apart)."""
    decoder = json.JSONDecoder(parse_constant=_constant, parse_float=_float, parse_int=_int)
    space = re.compile(r"\s*")
    pos = space.match(text, text.index("[") + 1).end()  # type: ignore[union-attr]
    if text.startswith("]", pos):
        return
    counted = newlines = 0  # the newlines before `counted`: each item's line in one pass, not one per item
    while True:
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            cut_short = exc.pos >= len(text.rstrip())  # an item cut short: named where it starts
            at = pos if cut_short else exc.pos
            yield _array_error(source, text, at, f"not valid JSON: {_plain_json_error(exc)}")
            return
        except RecursionError:
            yield _array_error(source, text, pos, "not valid JSON: brackets nested too deep")
            return
        except _NotJson as exc:
            yield _array_error(source, text, pos, exc.message, code=exc.code, hint=exc.hint)
            return
        counted, newlines = pos, newlines + text.count("\n", counted, pos)  # counted on from the last item
        line = where.line = newlines + 1
        if isinstance(value, dict):
            piece = text[pos:end]
            yield _checked(source, line, value, piece) if _encodable(piece) else _item(source, line, piece)
        else:
            yield _array_error(source, text, pos, f"item is a JSON {_kind(value)}, not an object")
        pos = space.match(text, end).end()  # type: ignore[union-attr]
        if text.startswith("]", pos):
            if text[pos + 1 :].strip():
                yield _array_error(source, text, pos + 1, "something follows the end of the array")
            return
        if not text.startswith(",", pos):
            reason = "the file ends before the array is closed (cut short?)" if pos >= len(text) else "a `,` is missing"
            yield _array_error(source, text, pos, f"not valid JSON: {reason}")
            return
        pos = space.match(text, pos + 1).end()  # type: ignore[union-attr]


def _array_error(
    source: str, text: str, pos: int, message: str, *, code: str = "C001", hint: str = ""
) -> UnreadableRecord:
    pos = min(pos, len(text))
    line = text.count("\n", 0, pos) + 1
    column = pos - text.rfind("\n", 0, pos)
    return _unreadable(
        source, line, message, code=code, column=column, hint=hint or "the file must be one JSON array of objects"
    )


# -- CSV ---------------------------------------------------------------------------------------------


class _Lines:
    """The decoded lines of a binary stream for ``csv.reader``, noting those that are not UTF-8."""

    def __init__(self, source: str, stream: Iterable[bytes]) -> None:
        self.source, self.stream = source, stream
        self.number = 0
        self.bad: dict[int, UnreadableRecord] = {}

    def __iter__(self) -> Iterator[str]:
        for raw in self.stream:
            self.number += 1
            if self.number == 1 and raw.startswith(BOM):
                raw = raw[len(BOM) :]
            text = _decoded(self.source, self.number, raw)
            if isinstance(text, UnreadableRecord):
                self.bad[self.number] = text
                text = raw.decode("utf-8", "replace")
            yield text


def _delimiter(header: str) -> str:
    """The separator of a CSV file, from its header line: `,` unless it holds none and another does."""
    if "," in header:
        return ","
    counts = {d: header.count(d) for d in _DELIMITERS[1:]}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _csv_records(source: str, stream: IO[bytes], typed: set[str], where: _Where) -> Iterator[dict[str, Any]]:
    lines = _Lines(source, stream)
    numbered = iter(lines)
    first = next(numbered, None)
    if first is None:
        return
    delimiter = _delimiter(first)

    def chained() -> Iterator[str]:
        yield first
        yield from numbered

    reader = csv.reader(chained(), delimiter=delimiter)
    header: list[str] | None = None
    start = 1
    while True:
        start = lines.number + 1 if header is not None else 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            where.line = lines.number
            yield _unreadable(source, lines.number, f"not readable as CSV: {exc}", code="C006", hint=_CSV_HINT)
            continue
        bad = next((lines.bad[n] for n in range(start, lines.number + 1) if n in lines.bad), None)
        if header is None:
            if bad is not None:
                raise bad.error.errors[0]
            header = [h.strip() for h in row]
            continue
        where.line = start
        if bad is not None:
            yield bad
        elif row and any(cell.strip() for cell in row):
            yield _csv_row(source, start, lines.number, header, row, typed, delimiter)


_CSV_HINT = 'put a value that holds the separator, a quote or a line break in double quotes, and double a `"` inside'


def _csv_row(
    source: str, start: int, end: int, header: list[str], row: list[str], typed: set[str], delimiter: str
) -> dict[str, Any]:
    if len(row) != len(header):
        return _shifted(source, start, end, header, row, delimiter)
    out: dict[str, Any] = {}
    for name, cell in zip(header, row, strict=True):
        if cell == "":
            continue
        if not _encodable(cell):
            return _unreadable(source, start, f"`{name}` is not UTF-8 text", code="C005", field=name, hint=_CSV_HINT)
        out[name] = _csv_value(cell) if name in typed else cell
    return out


def _shifted(source: str, start: int, end: int, header: list[str], row: list[str], delimiter: str) -> UnreadableRecord:
    sep = "tab" if delimiter == "\t" else f"`{delimiter}`"
    if end > start and any("\n" in cell for cell in row):
        return _unreadable(
            source,
            start,
            f'a `"` opened on this line is not closed until line {end}: the rows between are read as one value',
            code="C008",
            hint='close the quote, or double a `"` that is part of the value',
        )
    more = len(row) > len(header)
    return _unreadable(
        source,
        start,
        f"the row has {len(row)} cells but the header names {len(header)} columns: "
        f"{'an extra' if more else 'a missing'} {sep} shifts the cells after it",
        code="C008",
        value=cut(delimiter.join(row)),
        hint=f"put a value that holds {sep} in double quotes"
        if more
        else f"write an empty cell (two {sep} in a row) for a value that is absent",
    )


def _csv_value(text: str) -> Any:
    try:
        return _loads(text)
    except _NotJson:
        return text


# --------------------------------------------------------------------------------------------
# the time of decision
# --------------------------------------------------------------------------------------------


def parse_now(text: str | None, option: str = "--now") -> datetime:
    """The caller's time of decision (or another time given as ``option``): an ISO timestamp
    or date (UTC unless it says otherwise).

    Without one it is the current time, read here at the edge and never during evaluation.
    """
    if text is None:
        return datetime.now(UTC)  # the caller's clock, read here at the edge, never in evaluation
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        raise CharterError(
            f"`{option} {text}` is not a timestamp",
            code="C002",
            hint="write it like `2025-06-30T09:00:00Z` or `2025-06-30`",
        ) from None
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC)


__all__ = ["UnreadableRecord", "cut", "parse_now", "read_facts"]
