"""What a host may show of a record under an access decision (``Domain.release``): the
request's ``resource.record`` with every field the decision denies (or does not name) left
out, and every masked field masked in its class's style (``handling.mask`` of the
classification policy, as the decision gives it per field):

* ``none``: the value as it is; ``null``: ``null``; ``full``: ``"****"``;
* ``last4``: ``"****"`` and the last four characters (``"****"`` alone for four or fewer);
* ``year``: the year of a date or timestamp (``"1985"``), ``"****"`` for anything else;
* ``hash``: ``"hmac-sha256:"`` and 16 hex digits of an HMAC of the value under the host's
  ``hash_key`` (the same value gives the same text, so records can be joined); without a key,
  ``"****"``: an unkeyed hash of a phone number is undone by trying every number.

Fields are named as the decision names them (``address.city``, ``contacts[].phone``); an
object or list whose every field is left out is left out too. Fails closed: a path the
decision does not name is left out, and so is a value of a mask style it does not know.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Any

from engine.core.decision import Decision

HIDDEN = "****"
_DROP = object()
_DATE = re.compile(r"^(\d{4})-\d{2}-\d{2}")


def release(decision: Decision, request: Mapping[str, Any], hash_key: bytes | None = None) -> dict[str, Any]:
    """The record of ``request`` as ``decision`` lets its requester see it."""
    resource = request.get("resource")
    record = resource.get("record") if isinstance(resource, Mapping) else None
    if not isinstance(record, Mapping):
        return {}
    fields = decision.outputs.get("fields") or {}
    out = _object(record, "", fields, hash_key)
    return out if isinstance(out, dict) else {}


def _object(value: Mapping[str, Any], prefix: str, fields: Mapping[str, Any], key: bytes | None) -> Any:
    out: dict[str, Any] = {}
    for name, item in value.items():
        path = f"{prefix}.{name}" if prefix else str(name)
        shown = _value(item, path, fields, key)
        if shown is not _DROP:
            out[name] = shown
    return out if out else _DROP


def _value(item: Any, path: str, fields: Mapping[str, Any], key: bytes | None) -> Any:
    """As ``classification.flatten`` walks a record: a non-empty object field by field, a list
    holding objects item by item (``path[]``), anything else as one field."""
    if isinstance(item, Mapping) and item:
        return _object(item, path, fields, key)
    if isinstance(item, list) and any(isinstance(v, Mapping) for v in item):
        kept = [
            _object(v, path + "[]", fields, key) if isinstance(v, Mapping) else _leaf(v, path + "[]", fields, key)
            for v in item
        ]
        kept = [v for v in kept if v is not _DROP]
        return kept if kept else _DROP
    return _leaf(item, path, fields, key)


def _leaf(value: Any, path: str, fields: Mapping[str, Any], key: bytes | None) -> Any:
    entry = fields.get(path)
    if not isinstance(entry, Mapping) or entry.get("effect") not in ("allow", "mask"):
        return _DROP
    if entry["effect"] == "allow":
        return value
    style = entry.get("mask", "full")
    if isinstance(value, list):
        masked = [mask(v, style, key) for v in value]
        return _DROP if any(v is _DROP for v in masked) else masked
    return mask(value, style, key)


def mask(value: Any, style: str, key: bytes | None = None) -> Any:
    """One value in a mask style (``_DROP`` for a style this does not know: fails closed)."""
    if value is None or style == "null":
        return None
    if style == "none":
        return value
    if style == "full":
        return HIDDEN
    text = value if isinstance(value, str) else str(value)
    if style == "last4":
        return HIDDEN + text[-4:] if len(text) > 4 else HIDDEN
    if style == "year":
        found = _DATE.match(text)
        return found.group(1) if found else HIDDEN
    if style == "hash":
        if key is None:
            return HIDDEN
        return "hmac-sha256:" + hmac.new(key, text.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:16]
    return _DROP
