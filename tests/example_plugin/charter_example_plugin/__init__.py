"""An example Charter plugin, installed like any third-party package.

It adds the scorer ``engagement`` (how actively a customer buys) and the detector
``wechat_id`` (a WeChat account name). Both are pure: no clock, no I/O, no randomness.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from engine.hookspecs import DetectorSpec, FunctionSpec, ScorerSpec, hookimpl

_WECHAT = re.compile(r"^[A-Za-z][-_A-Za-z0-9]{5,19}$")


def engagement(facts: Mapping[str, Any], args: Mapping[str, Any], now: datetime) -> float:
    """Purchases in the last 12 months, damped by the months since the last one."""
    months = max((now - facts["last_purchase_at"]).days / 30.0, 0.0)
    return float(facts["purchases_12m"]) / (1.0 + args["damping"] * months)


def wechat_id(text: str) -> bool:
    return bool(_WECHAT.match(text)) and not text.isdigit()


@hookimpl
def charter_scorers() -> list[ScorerSpec]:
    return [
        ScorerSpec(
            "engagement",
            engagement,
            reads={"purchases_12m": "integer", "last_purchase_at": "timestamp"},
            args={"damping": 0.5},
            description="recent purchase activity",
        )
    ]


@hookimpl
def charter_detectors() -> list[DetectorSpec]:
    return [DetectorSpec("wechat_id", wechat_id, "WeChat account name")]


def initials(name: str) -> str:
    """The first letter of each word: `Wang Fang` -> `WF`."""
    return "".join(word[0] for word in name.split() if word)


@hookimpl
def charter_functions() -> list[FunctionSpec]:
    return [
        FunctionSpec(
            "initials",
            initials,
            params=("string",),
            result="string",
            method=True,
            description="first letter of each word",
        )
    ]
