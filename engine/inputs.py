"""Reading what callers hand the engine: customers' facts and the time of decision.

Facts come as JSON (one object or an array of them), JSON Lines or CSV, from a file or,
for ``-``, from standard input. ``parse_now`` reads the caller's ``now``. The command
line, the workbench and later the HTTP service all read their input through here, so
they accept the same formats and report the same errors.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from engine.core.model import FactDecl
from engine.errors import CharterError

# --------------------------------------------------------------------------------------------
# reading facts: JSON (one object or an array), JSON Lines, CSV; `-` is standard input
# --------------------------------------------------------------------------------------------


def read_facts(
    source: str, fmt: str = "auto", declared: Mapping[str, FactDecl] | None = None
) -> Iterator[dict[str, Any]]:
    """Stream customers from a file or stdin. JSON Lines and CSV never load the whole file.

    CSV cells are text; a cell of a fact declared as a number, integer, boolean or list is
    read as JSON (`12.5`, `true`, `["a"]`), so the fact checker sees the intended type. An
    empty cell is an absent fact.
    """
    stream = _open(source)
    where = "standard input" if source == "-" else f"`{source}`"
    try:
        yield from _records(source, fmt, declared, stream)
    except UnicodeDecodeError as exc:
        raise CharterError(
            f"{where} is not UTF-8 text (byte {exc.start} of a block cannot be read)",
            code="C005",
            hint="save the file as UTF-8 (with or without a byte-order mark)",
        ) from None
    except csv.Error as exc:
        raise CharterError(f"{where}: not readable as CSV: {exc}", code="C006", hint="check the quoting") from None
    except OSError as exc:
        raise CharterError(f"cannot read {where}: {exc.strerror}", code="C004") from None
    finally:
        if stream is not sys.stdin:
            stream.close()


def _open(source: str) -> IO[str]:
    if source == "-":
        return sys.stdin
    try:
        return open(source, encoding="utf-8-sig", newline="")  # closed by read_facts
    except OSError as exc:
        reason = "it is a directory" if Path(source).is_dir() else (exc.strerror or str(exc)).lower()
        raise CharterError(
            f"cannot read `{source}`: {reason}", code="C004", hint="give a .json, .jsonl or .csv file, or - for stdin"
        ) from None


def _records(
    source: str, fmt: str, declared: Mapping[str, FactDecl] | None, stream: IO[str]
) -> Iterator[dict[str, Any]]:
    if fmt == "auto":
        fmt = _guess_format(source, stream)
    if fmt == "csv":
        typed = {n for n, d in (declared or {}).items() if d.type not in ("string", "timestamp")}
        for row in csv.DictReader(stream):
            yield {k: _csv_value(v) if k in typed else v for k, v in row.items() if v not in ("", None)}
    elif fmt == "jsonl":
        for n, line in enumerate(stream, 1):
            if line.strip():
                yield _json_object(line, f"{source}:{n}")
    else:
        data = _json_object(stream.read(), source)
        yield from data if isinstance(data, list) else [data]


def _guess_format(source: str, stream: IO[str]) -> str:
    suffix = Path(source).suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    if suffix == ".json":
        return "json"
    return "jsonl"


def _json_object(text: str, where: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise CharterError(
            f"{where}: not valid JSON: {exc}", code="C001", hint="each line must be one JSON object"
        ) from None
    except RecursionError:
        raise CharterError(
            f"{where}: not valid JSON: brackets nested too deep", code="C001", hint="facts nest a few levels at most"
        ) from None
    return value  # a non-object is reported by the fact checker


def _csv_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
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


__all__ = ["parse_now", "read_facts"]
