"""Charter's exceptions: one tree under one base class.

::

    CharterError                     every error the engine raises on purpose
    ├── PolicyError                  a policy file is wrong (located: file:line:col)
    │   └── PolicyErrors             several PolicyError at once, sorted by location
    ├── FactError                    a customer fact is wrong (names the field and the rule)
    │   └── FactErrors               several FactError for one customer
    ├── EvaluationError              a decision could not be made (e.g. no snapshot, a plugin failed)
    │   └── BudgetExceeded           an expression went over the work budget (V008, engine.core.expr)
    ├── SnapshotError                a population snapshot is missing or corrupt
    ├── PluginError                  a plugin misbehaved (names the plugin)
    ├── ExprError                    an expression does not parse or type-check (engine.core.expr)
    ├── StorageError                 a store cannot be opened, read or written (engine.storage)
    ├── SealError                    the log key or a sealed value cannot be used (engine.audit.protect)
    └── ChainBroken                  the decision log's hash chain breaks (engine.audit.chain)

Every code an error carries is listed, with its meaning, in ``engine.codes`` (and
``docs/errors.md``, generated from it). ``Engine.evaluate`` and ``evaluate_batch`` raise
only ``FactErrors`` and ``EvaluationError``: a plugin's failure during a decision is an
``EvaluationError`` naming the plugin (or, for a scorer, detector or function, a note on the
decision and an undefined condition).

Library errors (YAML, jsonschema, cerberus, lark, SQLAlchemy) are wrapped at the
boundary into one of these and never leak to a host application.

Messages follow one style: lowercase, no final period, the user's own text in
backticks, never a Python class name. Help text ("did you mean `gold`?") lives in
``hint``, apart from the message.
"""

from __future__ import annotations

import calendar
import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, order=True)
class Location:
    """A place in a policy file: 1-based line and column plus the path inside the document."""

    file: str
    line: int = 0
    column: int = 0
    path: tuple[str | int, ...] = field(default=(), compare=False)

    def __str__(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}:{self.column}"
        return self.file

    def dotted_path(self) -> str:
        """The path inside the document, like ``tables[0].rows[2].when``."""
        out = ""
        for part in self.path:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
        return out

    def shifted(self, line_delta: int, column: int) -> Location:
        """The location ``line_delta`` lines further down, at ``column``."""
        return Location(self.file, self.line + line_delta, column, self.path)


class CharterError(Exception):
    """Base class of every error Charter raises on purpose."""

    code: str = "E000"

    def __init__(self, message: str, *, hint: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message

    def describe(self) -> str:
        """The message and, on a second line, the hint."""
        text = str(self)
        return f"{text}\n  help: {self.hint}" if self.hint else text

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "hint": self.hint}


class PolicyError(CharterError):
    """A mistake in a policy file, located at file, line, column and document path."""

    code = "P000"

    def __init__(
        self,
        message: str,
        location: Location,
        *,
        hint: str | None = None,
        code: str | None = None,
        related: Location | None = None,
    ) -> None:
        super().__init__(message, hint=hint, code=code)
        self.location = location
        self.related = related

    def __str__(self) -> str:
        text = f"{self.location}: {self.message} [{self.code}]"
        if self.related is not None:
            text += f" (see also {self.related})"
        return text

    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.location.file, self.location.line, self.location.column, self.code)

    def to_dict(self) -> dict[str, object]:
        out = super().to_dict()
        out.update(
            file=self.location.file,
            line=self.location.line,
            column=self.location.column,
            path=self.location.dotted_path(),
        )
        if self.related is not None:
            out["related"] = str(self.related)
        return out


class PolicyErrors(PolicyError):
    """Every error found in a policy set, sorted by location. Iterate to see them."""

    def __init__(self, errors: Sequence[PolicyError]) -> None:
        ordered = sorted(errors, key=PolicyError.sort_key)
        if not ordered:
            raise ValueError("PolicyErrors needs at least one error")
        first = ordered[0]
        super().__init__(first.message, first.location, hint=first.hint, code=first.code)
        self.errors: list[PolicyError] = ordered

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.errors)

    def __len__(self) -> int:
        return len(self.errors)

    def __str__(self) -> str:
        n = len(self.errors)
        head = f"{n} error{'s' if n != 1 else ''} in policies"
        return head + "".join(f"\n{e.describe()}" for e in self.errors)

    def describe(self) -> str:
        return str(self)


class FactError(CharterError):
    """A customer fact that breaks its declaration: names the field, the value and the rule."""

    code = "F000"

    def __init__(
        self,
        message: str,
        *,
        field: str,
        value: object = None,
        rule: str = "",
        hint: str | None = None,
        code: str | None = None,
        source: str = "",
        line: int = 0,
        column: int = 0,
    ) -> None:
        super().__init__(message, hint=hint, code=code)
        self.field = field
        self.value = value
        self.rule = rule
        self.source = source  # the input file and line, for a record that could not be read
        self.line = line
        self.column = column

    def to_dict(self) -> dict[str, object]:
        out = super().to_dict()
        out.update(field=self.field, value=shown_value(self.value), rule=self.rule)
        if self.line:
            out.update(file=self.source, line=self.line, column=self.column)
        return out


SHOWN_VALUE = 200  # characters of a value an error shows, at most (a 1 MB value is not echoed whole)


def shown_value(value: object) -> str:
    """``repr(value)`` cut to ``SHOWN_VALUE`` characters, saying how long it was."""
    text = repr(value)
    return text if len(text) <= SHOWN_VALUE else f"{text[:SHOWN_VALUE]}… ({len(text):,} characters)"


class FactErrors(FactError):
    """Every fact error found in one customer's facts."""

    def __init__(self, errors: Sequence[FactError], *, subject: str = "") -> None:
        first = errors[0]
        super().__init__(
            first.message,
            field=first.field,
            value=first.value,
            rule=first.rule,
            hint=first.hint,
            code=first.code,
            source=first.source,
            line=first.line,
            column=first.column,
        )
        self.errors = list(errors)
        self.subject = subject

    def __str__(self) -> str:
        who = f" for customer `{self.subject}`" if self.subject else ""
        return f"{len(self.errors)} bad fact(s){who}: " + "; ".join(e.message for e in self.errors)

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "subject": self.subject, "errors": [e.to_dict() for e in self.errors]}

    def within(self, prefix: str) -> FactErrors:
        """The same errors for facts found under ``prefix`` of a larger request (``resource.record``)."""
        moved = [
            FactError(
                e.message.replace(f"`{e.field}`", f"`{prefix}.{e.field}`", 1) if e.field else e.message,
                field=f"{prefix}.{e.field}" if e.field else prefix,
                value=e.value,
                rule=e.rule,
                hint=e.hint,
                code=e.code,
            )
            for e in self.errors
        ]
        return FactErrors(moved, subject=self.subject)


class EvaluationError(CharterError):
    """A decision could not be made. ``subject``: whose (the request's ``id``), when
    ``Engine.evaluate_batch`` yields it in that request's place."""

    code = "V000"
    subject: str | None = None

    def to_dict(self) -> dict[str, object]:
        out = super().to_dict()
        if self.subject is not None:
            out["subject"] = self.subject
        return out


class SnapshotError(CharterError):
    """A population snapshot is missing, corrupt or does not fit the policy."""

    code = "S000"


class PluginError(CharterError):
    """A plugin misbehaved: raised, returned the wrong type or registered a name twice."""

    code = "X000"

    def __init__(self, message: str, *, plugin: str, hint: str | None = None, code: str | None = None) -> None:
        super().__init__(message, hint=hint, code=code)
        self.plugin = plugin


def calendar_hint(text: object) -> str | None:
    """Why ``text``, written like a date, is not one in the calendar (`2025-02-30`: February
    2025 has 28 days); None when it is not written like a date or is a real one."""
    m = re.match(r"^(\d{4})-(\d{1,2})-(\d{1,2})", str(text))
    if m is None:
        return None
    year, month, day = (int(g) for g in m.groups())
    if not 1 <= month <= 12:
        return f"there is no month {month}: months run from 01 to 12"
    last = calendar.monthrange(year, month)[1] if year >= 1 else 31
    if not 1 <= day <= last:
        return f"{calendar.month_name[month]} {year} has {last} days"
    return None


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """A hint naming the closest of ``choices`` to ``word``, or None when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`?" if close else None
