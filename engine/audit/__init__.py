"""The audit trail: decision records in a hash chain, sensitive values sealed, replay.

* ``chain``   — the record format, the hash chain and ``verify``;
* ``protect`` — sensitive fact values sealed with per-customer AES-GCM keys (erasable);
* ``log``     — ``DecisionLog``: what the engine writes for every decision;
* ``replay``  — re-evaluate logged decisions, as they were or against other policies.
"""

from engine.audit.chain import VerifyResult, verify
from engine.audit.log import DecisionLog
from engine.audit.protect import Protector, load_key

__all__ = ["DecisionLog", "Protector", "VerifyResult", "load_key", "verify"]
