"""Errors of the condition language: ``ExprError`` when checking, ``EvalError`` when running."""

from __future__ import annotations

from engine.errors import CharterError


class ExprError(CharterError):
    """An expression that does not parse or type-check; ``offset`` is where, in its text."""

    code = "E100"

    def __init__(
        self, message: str, *, offset: int, length: int = 1, hint: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message, hint=hint, code=code)
        self.offset = offset
        self.length = length


class EvalError(Exception):
    """A condition could not be evaluated; the engine treats it as undefined (not matched)."""

    kind = "error"


class NoSuchKey(EvalError):
    """A declared fact (or map key) that is absent."""

    kind = "no such key"


class NoSuchOverload(EvalError):
    """An operator applied to values of types it does not take (e.g. a null fact)."""

    kind = "no such overload"


class DivisionByZero(EvalError):
    kind = "division by zero"


class Overflow(EvalError):
    """An int outside 64 bits, or a timestamp or duration out of range."""

    kind = "overflow"


class FunctionFailed(EvalError):
    """A plugin's function raised (its own bug): the condition is undefined, the plugin named."""

    kind = "plugin function failed"


class InvalidArgument(EvalError):
    """A bad argument: an index out of range, text that is not a number, ..."""

    kind = "invalid argument"
