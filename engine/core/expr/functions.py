"""The functions of the condition language: declared signatures and their implementations.

Each function states its parameter and result types apart from its implementation, so a
policy that calls one wrongly fails when it loads, not when it runs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.core.expr.errors import InvalidArgument, NoSuchOverload, Overflow
from engine.core.expr.types import (
    BOOL,
    DOUBLE,
    DURATION,
    DYN,
    INT,
    STRING,
    TIMESTAMP,
    ListType,
    MapType,
    Type,
)

INT_MIN, INT_MAX = -(2**63), 2**63 - 1
ANY_LIST = Type("list(*)")
ANY_MAP = Type("map(*)")
ANY = Type("*")


@dataclass(frozen=True)
class Signature:
    name: str
    method: bool
    params: tuple[Type, ...]
    result: Type
    impl: Callable[..., Any]
    literal_check: Callable[[str], str | None] | None = None
    plugin: str = ""  # the plugin that provides it; "" for a built-in


# --------------------------------------------------------------------------------------------
# implementations (each raises an EvalError subclass, never a Python error)
# --------------------------------------------------------------------------------------------

# CEL's units, and days and weeks as the policy files' own durations write them (`14d`): a day
# is 24 hours (a duration is elapsed time; calendars are the escalation domain's)
_DURATION = re.compile(r"^(-?)((?:\d+(?:\.\d+)?(?:w|d|h|m|s|ms|us|ns))+)$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(w|d|h|ms|m|s|us|ns)")
_UNIT_US = {
    "w": 604_800_000_000,
    "d": 86_400_000_000,
    "h": 3_600_000_000,
    "m": 60_000_000,
    "s": 1_000_000,
    "ms": 1_000,
    "us": 1,
    "ns": 0.001,
}
MAX_DURATION = timedelta(seconds=315_576_000_000)


def parse_duration(text: str) -> timedelta:
    m = _DURATION.match(text)
    if not m:
        raise InvalidArgument(f"`{text}` is not a duration")
    micros = sum(float(n) * _UNIT_US[u] for n, u in _DURATION_PART.findall(m.group(2)))
    if micros > MAX_DURATION.total_seconds() * 1e6:
        raise Overflow(f"duration `{text}` is out of range")
    d = timedelta(microseconds=round(micros))
    return -d if m.group(1) else d


def parse_ts(text: str) -> datetime:
    try:
        stamp = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise InvalidArgument(f"`{text}` is not a timestamp") from None
    if stamp.tzinfo is None:
        raise InvalidArgument(f"`{text}` has no time zone")
    return stamp


def _duration_check(text: str) -> str | None:
    try:
        parse_duration(text)
    except (InvalidArgument, Overflow):
        return f"`{text}` is not a duration"
    return None


def _timestamp_check(text: str) -> str | None:
    try:
        parse_ts(text)
    except InvalidArgument as exc:
        return str(exc)
    return None


# `matches` runs on RE2 (google-re2): time linear in the text's length for any pattern, so no
# pattern can stall a decision. RE2 has no backreferences and no lookaround; such patterns
# are refused when the policy loads. Compiled patterns are kept, keyed by their text.
_PATTERNS: dict[str, Callable[[str], Any]] = {}
MAX_PATTERN_MEMORY = 1 << 20  # bytes RE2 may use to compile one pattern: far beyond any real one


def _re2() -> Any:
    import re2  # type: ignore[import-untyped]  # imported when a policy first uses `matches`: keeps it off `import engine`

    return re2


def pattern_search(pattern: str) -> Callable[[str], Any]:
    """The RE2 ``search`` of ``pattern`` (checked by ``_regex_check`` first)."""
    hit = _PATTERNS.get(pattern)
    if hit is None:
        re2 = _re2()
        options = re2.Options()
        options.log_errors = False
        options.max_mem = MAX_PATTERN_MEMORY
        if len(_PATTERNS) >= 4096:  # a bound, however many policies are loaded over time
            _PATTERNS.clear()
        hit = _PATTERNS[pattern] = re2.compile(pattern, options).search
    return hit


_RE2_WORDS = (
    (re.compile(r"invalid escape sequence: \\[1-9]"), "backreferences like `\\1` are not supported"),
    (re.compile(r"invalid escape sequence"), "an unknown escape: write a backslash as `\\\\`"),
    (re.compile(r"invalid perl operator: \(\?[=!]"), "lookahead `(?=...)`, `(?!...)` is not supported"),
    (re.compile(r"invalid perl operator: \(\?<"), "lookbehind `(?<=...)`, `(?<!...)` is not supported"),
    (re.compile(r"pattern too large"), "the pattern is too large"),
    (
        re.compile(r"(bad|missing argument to|no argument for) repetition operator"),
        "a `*`, `+`, `?` or `{n}` repeats nothing",
    ),
    (
        re.compile(r"invalid repetition size"),
        "a repetition `{n,m}` with `n` above `m`, or over 1000 (nested repetitions multiply)",
    ),
    (re.compile(r"missing \)"), "a `(` is never closed"),
    (re.compile(r"unexpected \)|missing \("), "a `)` closes nothing"),
    (re.compile(r"missing \]"), "a `[` is never closed"),
)


def _regex_check(pattern: str) -> str | None:
    """Refuse a pattern RE2 cannot run, saying why in plain words."""
    re2 = _re2()
    try:
        pattern_search(pattern)
    except re2.error as exc:
        raw = exc.args[0] if exc.args else ""
        reason = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        words = next((w for key, w in _RE2_WORDS if key.search(reason)), reason)
        return f"`{pattern}` cannot be used as a pattern: {words}"
    return None


def _size(x: Any) -> int:
    return len(x)


def _matches(s: str, pattern: str) -> bool:
    return pattern_search(pattern)(s) is not None


def _to_int(x: Any) -> int:
    if isinstance(x, bool):
        raise NoSuchOverload("int() of a bool")
    if isinstance(x, int):
        return x
    if isinstance(x, float):
        if math.isnan(x) or not (INT_MIN <= x < 2.0**63):
            raise Overflow("the number is out of the int range")
        return int(x)
    if isinstance(x, datetime):
        return int(x.timestamp())
    if isinstance(x, str):
        try:
            value = int(x, 10)
        except ValueError:
            raise InvalidArgument(f"`{x}` is not a whole number") from None
        if not INT_MIN <= value <= INT_MAX:
            raise Overflow("the number is out of the int range")
        return value
    raise NoSuchOverload(f"int() of {type(x).__name__}")


def _to_double(x: Any) -> float:
    if isinstance(x, bool):
        raise NoSuchOverload("double() of a bool")
    if isinstance(x, (int, float)):
        return float(x)
    if isinstance(x, str):
        try:
            return float(x)
        except ValueError:
            raise InvalidArgument(f"`{x}` is not a number") from None
    raise NoSuchOverload(f"double() of {type(x).__name__}")


def _to_string(x: Any) -> str:
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, str):
        return x
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        return repr(x)
    if isinstance(x, datetime):
        return x.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(x, timedelta):
        return f"{x.total_seconds():g}s"
    raise NoSuchOverload(f"string() of {type(x).__name__}")


def _utc(t: datetime) -> datetime:
    return t.astimezone(UTC)


def _total(unit: float) -> Callable[[timedelta], int]:
    return lambda d: int(d / timedelta(microseconds=unit))


_S = [
    Signature("size", False, (STRING,), INT, _size),
    Signature("size", False, (ANY_LIST,), INT, _size),
    Signature("size", False, (ANY_MAP,), INT, _size),
    Signature("size", True, (STRING,), INT, _size),
    Signature("size", True, (ANY_LIST,), INT, _size),
    Signature("startsWith", True, (STRING, STRING), BOOL, str.startswith),
    Signature("endsWith", True, (STRING, STRING), BOOL, str.endswith),
    Signature("contains", True, (STRING, STRING), BOOL, lambda s, t: t in s),
    Signature("matches", True, (STRING, STRING), BOOL, _matches, _regex_check),
    Signature("lowerAscii", True, (STRING,), STRING, lambda s: "".join(c.lower() if c.isascii() else c for c in s)),
    Signature("upperAscii", True, (STRING,), STRING, lambda s: "".join(c.upper() if c.isascii() else c for c in s)),
    Signature("int", False, (INT,), INT, _to_int),
    Signature("int", False, (DOUBLE,), INT, _to_int),
    Signature("int", False, (STRING,), INT, _to_int),
    Signature("int", False, (TIMESTAMP,), INT, _to_int),
    Signature("double", False, (DOUBLE,), DOUBLE, _to_double),
    Signature("double", False, (INT,), DOUBLE, _to_double),
    Signature("double", False, (STRING,), DOUBLE, _to_double),
    Signature("string", False, (ANY,), STRING, _to_string),
    Signature("duration", False, (STRING,), DURATION, parse_duration, _duration_check),
    Signature("timestamp", False, (STRING,), TIMESTAMP, parse_ts, _timestamp_check),
    Signature("getHours", True, (DURATION,), INT, _total(3_600_000_000)),
    Signature("getMinutes", True, (DURATION,), INT, _total(60_000_000)),
    Signature("getSeconds", True, (DURATION,), INT, _total(1_000_000)),
    Signature("getMilliseconds", True, (DURATION,), INT, lambda d: (d // timedelta(milliseconds=1)) % 1000),
    Signature("getFullYear", True, (TIMESTAMP,), INT, lambda t: _utc(t).year),
    Signature("getMonth", True, (TIMESTAMP,), INT, lambda t: _utc(t).month - 1),
    Signature("getDate", True, (TIMESTAMP,), INT, lambda t: _utc(t).day),
    Signature("getDayOfMonth", True, (TIMESTAMP,), INT, lambda t: _utc(t).day - 1),
    Signature("getDayOfWeek", True, (TIMESTAMP,), INT, lambda t: (_utc(t).weekday() + 1) % 7),
    Signature("getDayOfYear", True, (TIMESTAMP,), INT, lambda t: _utc(t).timetuple().tm_yday - 1),
    Signature("getHours", True, (TIMESTAMP,), INT, lambda t: _utc(t).hour),
    Signature("getMinutes", True, (TIMESTAMP,), INT, lambda t: _utc(t).minute),
    Signature("getSeconds", True, (TIMESTAMP,), INT, lambda t: _utc(t).second),
]

_USAGE = {
    "size": "`size(x)` or `x.size()` for text, lists and maps",
    "startsWith": '`customer.name.startsWith("A")`',
    "endsWith": '`customer.email.endsWith(".cn")`',
    "contains": '`customer.notes.contains("vip")`',
    "matches": '`customer.phone.matches("^1[3-9][0-9]{9}$")`',
    "int": "`int(x)` of a number, text or timestamp",
    "double": "`double(x)` of a number or text",
    "duration": '`duration("24h")`, `duration("90d")`, `duration("1h30m")`: units w, d (24h), h, m, s, ms, us, ns',
    "timestamp": '`timestamp("2025-06-30T00:00:00Z")`',
}


def _accepts(param: Type, arg: Type) -> bool:
    if arg == DYN or param == ANY:
        return True
    if param == ANY_LIST:
        return isinstance(arg, ListType)
    if param == ANY_MAP:
        return isinstance(arg, MapType)
    return param == arg


def resolve(name: str, target: Type | None, args: Sequence[Type], extra: Sequence[Signature] = ()) -> Signature | None:
    """The signature a call matches (built-ins first, then plugin functions), or None."""
    given = ([target] if target is not None else []) + list(args)
    for sig in (*_S, *extra):
        if (
            sig.name == name
            and sig.method == (target is not None)
            and len(sig.params) == len(given)
            and all(_accepts(p, a) for p, a in zip(sig.params, given, strict=True))
        ):
            return sig
    return None


def names(*, method: bool, extra: Sequence[Signature] = ()) -> list[str]:
    return sorted({s.name for s in (*_S, *extra) if s.method == method})


BUILTIN_NAMES = frozenset(s.name for s in _S) | {"has", "exists", "all", "exists_one", "filter", "map"}


def usage(name: str) -> str | None:
    return _USAGE.get(name)
