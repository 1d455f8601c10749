"""Errors of the condition language: ``ExprError`` when checking, ``EvalError`` when running,
``BudgetExceeded`` when one evaluation does more work than the budget allows."""

from __future__ import annotations

from engine.errors import CharterError, EvaluationError


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


class BudgetExceeded(EvaluationError):
    """One evaluation of an expression took more steps than ``BUDGET`` or would build a text or
    list longer than ``MAX_SIZE`` (``engine.core.expr.cost``): the decision fails, named.

    Not an ``EvalError``: no comprehension, ``&&`` or ``||`` absorbs it, and no rule or score
    is quietly undefined; the same facts fail the same way on every replay."""

    code = "V008"

    def __init__(self, message: str, *, expression: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.expression = expression  # the comprehension or concatenation that went over
