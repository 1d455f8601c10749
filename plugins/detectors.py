"""Built-in content detectors for data classification (domain.md §2).

Each detector is a pure function from a field's text to whether the text *is* (or, for
``medical_terms``, *mentions*) that kind of data. Checksums are verified where the format
has one, so a random 18-digit number is not taken for a national ID.
"""

from __future__ import annotations

import re
from datetime import date

from engine.hookspecs import DetectorSpec, hookimpl

_ID = re.compile(r"^\d{17}[\dXx]$")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CARD = re.compile(r"^\d{12,19}$")
_PHONE = re.compile(r"^(?:\+?86[- ]?)?1[3-9]\d{9}$")
_EMAIL = re.compile(r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})+$")
MEDICAL_TERMS = (
    "diabetes",
    "hypertension",
    "asthma",
    "cancer",
    "pregnan",
    "hiv",
    "hepatitis",
    "allergy",
    "diagnos",
    "medical",
    "prescription",
    "糖尿病",
    "高血压",
    "哮喘",
    "癌",
    "怀孕",
    "病历",
    "诊断",
    "过敏",
    "处方",
)


def national_id(text: str) -> bool:
    """An 18-character PRC resident ID: a real birth date and a valid GB 11643-1999 check character."""
    if not _ID.match(text):
        return False
    try:
        born = date(int(text[6:10]), int(text[10:12]), int(text[12:14]))
    except ValueError:
        return False
    if born.year < 1900:
        return False
    total = sum(int(d) * w for d, w in zip(text[:17], _ID_WEIGHTS, strict=True))
    return "10X98765432"[total % 11] == text[17].upper()


def bank_card(text: str) -> bool:
    """A 12 to 19 digit card number (spaces or dashes allowed) with a valid Luhn check digit."""
    digits = text.replace(" ", "").replace("-", "")
    if not _CARD.match(digits):
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def phone(text: str) -> bool:
    """A mainland China mobile number, optionally with +86."""
    return bool(_PHONE.match(text.replace(" ", "").replace("-", "")))


def email(text: str) -> bool:
    return bool(_EMAIL.match(text))


_MEDICAL = re.compile("|".join(re.escape(t) for t in MEDICAL_TERMS), re.IGNORECASE)


def medical_terms(text: str) -> bool:
    """Mentions a medical condition or record (English or Chinese terms)."""
    return _MEDICAL.search(text) is not None


@hookimpl
def charter_detectors() -> list[DetectorSpec]:
    return [
        DetectorSpec("national_id", national_id, "PRC resident ID number with a valid check character"),
        DetectorSpec("bank_card", bank_card, "bank card number with a valid Luhn digit"),
        DetectorSpec("phone", phone, "mainland China mobile number"),
        DetectorSpec("email", email, "e-mail address"),
        DetectorSpec("medical_terms", medical_terms, "text mentioning a medical condition or record"),
    ]
