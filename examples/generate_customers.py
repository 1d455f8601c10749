"""Generate the example customers: realistic, synthetic, byte-for-byte reproducible.

    python examples/generate_customers.py [--count 2000] [--seed 20251124] [--out examples/customers.jsonl]

Every person and company is invented. National ID numbers carry a valid GB 11643-1999
check digit and bank cards a valid Luhn digit, so detectors can be tested on them, but none
belongs to anyone. No clock is read: ``--as-of`` fixes "today" (default 2025-06-30).
"""

from __future__ import annotations

import argparse
import json
import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
GIVEN = [
    "芳",
    "伟",
    "娜",
    "敏",
    "静",
    "磊",
    "洋",
    "艳",
    "勇",
    "军",
    "杰",
    "娟",
    "涛",
    "明",
    "超",
    "秀英",
    "建华",
    "志强",
    "海燕",
    "晓东",
]
COMPANY_PREFIX = ["华科", "中信", "东方", "金桥", "远景", "恒通", "新纪元", "瑞丰", "天成", "博安", "海川", "星辰"]
COMPANY_KIND = ["电子", "贸易", "物流", "医疗器械", "能源", "软件", "食品", "机械", "教育科技", "金融服务"]
REGIONS = {
    "shanghai": "上海市",
    "beijing": "北京市",
    "guangdong": "广东省广州市",
    "zhejiang": "浙江省杭州市",
    "jiangsu": "江苏省南京市",
    "sichuan": "四川省成都市",
    "hubei": "湖北省武汉市",
    "shandong": "山东省济南市",
}
AREA_CODES = {
    "shanghai": "310101",
    "beijing": "110101",
    "guangdong": "440103",
    "zhejiang": "330102",
    "jiangsu": "320102",
    "sichuan": "510104",
    "hubei": "420102",
    "shandong": "370102",
}
INDUSTRIES = [
    "manufacturing",
    "finance",
    "technology",
    "retail",
    "healthcare",
    "logistics",
    "energy",
    "education",
    "other",
]
CATEGORIES = ["hardware", "software", "services", "consumables", "training", "maintenance", "consulting", "logistics"]
STREETS = ["人民路", "解放路", "中山路", "建设大道", "科技园路", "世纪大道"]
CONDITIONS = ["diabetes", "hypertension", "asthma", "pregnancy", "allergy to penicillin"]
ID_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
ID_CHECK = "10X98765432"


def id_check_digit(first17: str) -> str:
    """GB 11643-1999 (ISO 7064 MOD 11-2) check character."""
    return ID_CHECK[sum(int(d) * w for d, w in zip(first17, ID_WEIGHTS, strict=True)) % 11]


def luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def customer(rng: random.Random, n: int, as_of: datetime) -> dict[str, Any]:
    b2b = rng.random() < 0.45
    region = rng.choice(list(REGIONS))
    # value: heavy tailed (lognormal); companies buy more
    sales = round(math.exp(rng.gauss(11.2 if b2b else 9.0, 1.25)), 2)
    edge = rng.random() < 0.01
    relationship = round(min(rng.expovariate(1 / 5.0), 25.0), 2)
    if sales > 200_000:
        relationship = round(min(relationship + rng.uniform(2, 8), 25.0), 2)
    loyalty = round(min(max(rng.gauss(0.35 + min(relationship, 10) / 25, 0.18), 0.0), 1.0), 2)
    margin = rng.uniform(0.08, 0.35) if rng.random() > 0.03 else -rng.uniform(0.01, 0.1)
    churnish = rng.random() < 0.12
    purchases = max(0, int(rng.gauss(math.log10(sales + 10) * 4 - 10, 3))) if not churnish else rng.randint(0, 2)
    if edge:
        sales, purchases, relationship = 0.0, 0, 0.0
    first = as_of - timedelta(days=int(relationship * 365) + rng.randint(0, 120), minutes=rng.randint(0, 1440))
    gap_days = rng.randint(120, 400) if churnish else rng.randint(1, 90)
    last = max(first, as_of - timedelta(days=gap_days, minutes=rng.randint(0, 1440)))
    if purchases == 0 and not churnish:
        last = max(first, as_of - timedelta(days=rng.randint(200, 500)))
    c: dict[str, Any] = {"id": f"C{n:06d}"}
    if b2b:
        c["name"] = f"{REGIONS[region][:2]}{rng.choice(COMPANY_PREFIX)}{rng.choice(COMPANY_KIND)}有限公司"
        c["gender"] = "unknown"
    else:
        c["name"] = rng.choice(SURNAMES) + rng.choice(GIVEN)
        c["gender"] = rng.choice(["female", "male"])
        birth = datetime(1950, 1, 1, tzinfo=UTC) + timedelta(days=rng.randint(0, 365 * 55))
        c["birth_date"] = birth.strftime("%Y-%m-%d")
    c["segment"] = "b2b" if b2b else "b2c"
    c["industry"] = rng.choice(INDUSTRIES) if b2b else rng.choice(["retail", "healthcare", "education", "other"])
    c["region"] = region
    c["phone"] = f"1{rng.choice('3456789')}{rng.randint(0, 999_999_999):09d}"
    c["email"] = f"user{n:06d}@{rng.choice(['example.cn', 'mail.example.com', 'corp.example.cn'])}"
    c["address"] = f"{REGIONS[region]}{rng.choice(STREETS)}{rng.randint(1, 999)}号"
    if not b2b:
        body = AREA_CODES[region] + c["birth_date"].replace("-", "") + f"{rng.randint(0, 999):03d}"
        c["national_id"] = body + id_check_digit(body)
    card_body = "62" + "".join(str(rng.randint(0, 9)) for _ in range(rng.choice([13, 16])))
    c["bank_account"] = card_body + luhn_digit(card_body)
    if not b2b and rng.random() < 0.03:
        c["medical_notes"] = f"customer reported {rng.choice(CONDITIONS)}"
    c["annual_sales"] = sales
    c["profit_contribution"] = round(sales * margin, 2)
    c["market_share"] = round(min(max(rng.betavariate(2, 5) + loyalty / 4, 0.0), 1.0), 2)
    c["relationship_years"] = relationship
    c["purchases_12m"] = purchases
    c["avg_order_value"] = round(sales / purchases, 2) if purchases else 0.0
    c["first_purchase_at"] = stamp(first)
    c["last_purchase_at"] = stamp(last)
    c["product_categories"] = rng.sample(CATEGORIES, rng.randint(1, 4))
    c["loyalty_score"] = loyalty
    c["default_risk"] = round(min(rng.betavariate(1.2, 12) * (3 if rng.random() < 0.05 else 1), 1.0), 2)
    c["fraud_flags"] = rng.choice([1, 1, 2]) if rng.random() < 0.02 else 0
    c["compliance_violations"] = rng.randint(1, 3) if rng.random() < 0.03 else 0
    c["complaints_90d"] = min(int(rng.expovariate(1.0 if churnish else 3.0)), 6)
    c["satisfaction"] = round(min(max(rng.gauss(2.6 if churnish else 4.1, 0.7), 1.0), 5.0), 1)
    c["nps"] = min(max(round(c["satisfaction"] * 2 + rng.gauss(0, 1.2)), 0), 10)
    c["consent_marketing"] = rng.random() < 0.7
    if rng.random() < 0.05:
        c["relationship_ended_at"] = stamp(last + timedelta(days=rng.randint(1, 60)) if last < as_of else as_of)
    c["legal_hold"] = rng.random() < 0.01
    return c


def generate(count: int, seed: int, as_of: datetime) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [customer(rng, n, as_of) for n in range(1, count + 1)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=20251124)
    ap.add_argument("--as-of", default="2025-06-30T00:00:00Z")
    ap.add_argument("--out", default=str(Path(__file__).parent / "customers.jsonl"))
    args = ap.parse_args()
    as_of = datetime.fromisoformat(args.as_of)
    rows = generate(args.count, args.seed, as_of)
    with open(args.out, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    sales = sorted((r["annual_sales"] for r in rows), reverse=True)
    top = sum(sales[: len(sales) // 5]) / max(sum(sales), 1)
    print(f"{len(rows)} customers -> {args.out}; top 20% hold {top:.0%} of sales")


if __name__ == "__main__":
    main()
