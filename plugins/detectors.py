"""Built-in content detectors for data classification (domain.md §2).

Each detector is a pure function from a field's text to whether the text *is* (or, for
``medical_terms``, *mentions*) that kind of data. Checksums are verified where the format
has one, so a random 18-digit number is not taken for a national ID.
"""

from __future__ import annotations

import re
from collections.abc import Callable
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
# The same search as one literal search of the lowered text (no IGNORECASE: that search tries
# every term at every character). Under IGNORECASE a character matches a term's letter when its
# simple lowercase is that letter, or (``re``'s case fixes) it is U+0131 (dotless i) for ``i`` or
# U+017F (long s) for ``s``; ``str.lower`` is that simple lowercase, one character for one, except for ``İ`` (it
# gives ``i̇``, two): ``_FOLD`` maps those three first (and ``K``, the Kelvin sign, to ``k``,
# as its lowercase does). tests/test_differential.py checks it for every code point.
_FOLD = {0x130: "i", 0x131: "i", 0x17F: "s", 0x212A: "k"}
_UNFOLDED = re.compile("[" + "".join(map(chr, _FOLD)) + "]")
_LOWERED = re.compile("|".join(re.escape(t.lower()) for t in MEDICAL_TERMS))


def medical_terms(text: str) -> bool:
    """Mentions a medical condition or record (English terms in any case, or Chinese terms)."""
    if not text.isascii() and _UNFOLDED.search(text) is not None:
        text = text.translate(_FOLD)
    return _LOWERED.search(text.lower()) is not None


# No term holds a line break: a text mentions one exactly when one of its lines does, so a
# record's texts can be asked at once, joined by line breaks (the ``by_line`` attribute,
# engine.domains.classification); the detector never raises on a text.
medical_terms.by_line = True  # type: ignore[attr-defined]


# "Contains" forms, for the decision log only (never for classification decisions): a text
# that holds, somewhere inside it, a value the detector accepts — a national ID typed into a
# free-text note, a phone number in a remark. The log seals such a text whole
# (engine.domains.classification.field_classifier reads a detector's ``contains`` attribute).
# Digits are tried in every run of groups split by spaces or dashes ("+86 184 6026 9859",
# "6265 2656 9944 7481 468"), so the forms find a little more than the detectors accept.
_DIGIT_RUN = re.compile(r"\+?\d[\dXx]*(?:[ -]\+?\d[\dXx]*)*")
_EMAIL_IN = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_LONGEST = 24  # characters of the longest candidate a digit detector can accept (+86, 11 digits; 19-digit cards)


def _in_digit_runs(detect: Callable[[str], bool]) -> Callable[[str], bool]:
    def contains(text: str) -> bool:
        if detect(text):
            return True
        for run in _DIGIT_RUN.finditer(text):
            groups = re.split("[ -]", run.group())
            for i in range(len(groups)):
                joined = ""
                for group in groups[i:]:
                    joined += group
                    if len(joined) > _LONGEST:
                        break
                    if detect(joined):
                        return True
        return False

    contains.__doc__ = f"A text holding a value `{detect.__name__}` accepts."
    return contains


def contains_email(text: str) -> bool:
    """A text holding an e-mail address."""
    if "@" not in text:
        return False
    for m in _EMAIL_IN.finditer(text):
        local, domain = m.group().split("@", 1)
        if email(local[-64:] + "@" + domain):
            return True
    return False


contains_national_id = _in_digit_runs(national_id)
contains_bank_card = _in_digit_runs(bank_card)
contains_phone = _in_digit_runs(phone)
CONTAINS: dict[str, Callable[[str], bool]] = {
    "national_id": contains_national_id,
    "bank_card": contains_bank_card,
    "phone": contains_phone,
    "email": contains_email,
    "medical_terms": medical_terms,  # it already finds a mention anywhere in the text
}
# the protocol the log reads: a detector function's ``contains`` attribute
national_id.contains = contains_national_id  # type: ignore[attr-defined]
bank_card.contains = contains_bank_card  # type: ignore[attr-defined]
phone.contains = contains_phone  # type: ignore[attr-defined]
email.contains = contains_email  # type: ignore[attr-defined]
medical_terms.contains = medical_terms  # type: ignore[attr-defined]


# What every text each detector accepts contains (tests/test_plugins.py proves each one
# against its detector): classification asks the detectors only of texts a screen finds.
SCREENS = {
    "national_id": _ID.pattern,
    "bank_card": r"^[\d -]{12,}$",  # 12 to 19 digits once spaces and dashes are removed
    "phone": r"^[+\d -]{11,}$",
    "email": "@",
}


@hookimpl
def charter_detectors() -> list[DetectorSpec]:
    return [
        DetectorSpec(
            "national_id",
            national_id,
            "PRC resident ID number with a valid check character",
            screen=SCREENS["national_id"],
        ),
        DetectorSpec("bank_card", bank_card, "bank card number with a valid Luhn digit", screen=SCREENS["bank_card"]),
        DetectorSpec("phone", phone, "mainland China mobile number", screen=SCREENS["phone"]),
        DetectorSpec("email", email, "e-mail address", screen=SCREENS["email"]),
        DetectorSpec(
            "medical_terms",
            medical_terms,
            "text mentioning a medical condition or record",
        ),
    ]
