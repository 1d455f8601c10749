"""The shipped example customers: reproducible from the seed, valid, and realistic."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from conftest import EXAMPLES, ROOT

ID_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]


def mod11_2_ok(number: str) -> bool:
    """GB 11643-1999, written here independently of the generator."""
    total = sum(int(d) * w for d, w in zip(number[:17], ID_WEIGHTS, strict=True))
    return "10X98765432"[total % 11] == number[17]


def luhn_ok(number: str) -> bool:
    digits = [int(d) for d in reversed(number)]
    total = sum(digits[0::2]) + sum(sum(divmod(2 * d, 10)) for d in digits[1::2])
    return total % 10 == 0


def test_regenerating_reproduces_the_file_byte_for_byte(tmp_path: Path) -> None:
    out = tmp_path / "customers.jsonl"
    subprocess.run(
        [sys.executable, str(ROOT / "examples" / "generate_customers.py"), "--out", str(out)],
        check=True,
        capture_output=True,
    )
    assert out.read_bytes() == EXAMPLES.read_bytes()


def test_identifiers_are_checksum_valid_and_consistent(customers: list[dict[str, Any]]) -> None:
    assert len(customers) >= 1000
    assert len({c["id"] for c in customers}) == len(customers)
    with_id = [c for c in customers if "national_id" in c]
    assert len(with_id) > 500
    for c in with_id:
        assert len(c["national_id"]) == 18 and mod11_2_ok(c["national_id"])
        assert c["national_id"][6:14] == c["birth_date"].replace("-", "")
    for c in customers:
        assert len(c["bank_account"]) in (16, 19) and c["bank_account"].startswith("62") and luhn_ok(c["bank_account"])
        first = datetime.fromisoformat(c["first_purchase_at"])
        last = datetime.fromisoformat(c["last_purchase_at"])
        assert first <= last <= datetime.fromisoformat("2025-06-30T00:00:00Z")


def test_checksums_catch_a_changed_digit(customers: list[dict[str, Any]]) -> None:
    c = next(c for c in customers if "national_id" in c)
    nid, card = c["national_id"], c["bank_account"]
    bumped_id = nid[:5] + str((int(nid[5]) + 1) % 10) + nid[6:]
    bumped_card = card[:-2] + str((int(card[-2]) + 1) % 10) + card[-1]
    assert mod11_2_ok(nid) and not mod11_2_ok(bumped_id)
    assert luhn_ok(card) and not luhn_ok(bumped_card)


def test_top_fifth_of_customers_holds_over_half_of_sales(customers: list[dict[str, Any]]) -> None:
    sales = sorted((c["annual_sales"] for c in customers), reverse=True)
    assert sum(sales[: len(sales) // 5]) > 0.5 * sum(sales)  # domain.md §1: the top band ">50% of sales"


def test_single_example_customer_is_one_of_them(customers: list[dict[str, Any]]) -> None:
    one = json.loads((ROOT / "examples" / "customer.json").read_text(encoding="utf-8"))
    assert one in customers
