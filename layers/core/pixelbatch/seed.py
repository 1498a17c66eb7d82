"""Seed the feature catalog and (locally) reset dev accounts.

Deployed stack: `python -m pixelbatch.seed --features-table T1 --pipelines-table T2`
(table names are in the stack outputs); the local stack calls seed_catalog itself."""

from __future__ import annotations

import argparse
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
from boto3.dynamodb.conditions import Key

from pixelbatch.clock import now_iso
from pixelbatch.models import PLANS
from pixelbatch.settings import Settings

DEFAULT_CATALOG = Path(__file__).resolve().parents[3] / "catalog"


def _load(path: Path) -> list[dict[str, Any]]:
    # Numbers as Decimal: DynamoDB rejects floats.
    rows: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)
    return rows


def seed_catalog(catalog_dir: Path, features_table: str, pipelines_table: str) -> None:
    dynamodb = boto3.resource("dynamodb")
    with dynamodb.Table(pipelines_table).batch_writer() as batch:
        for pipeline in _load(catalog_dir / "pipelines.json"):
            batch.put_item(Item=pipeline)
    with dynamodb.Table(features_table).batch_writer() as batch:
        for feature in _load(catalog_dir / "features.json"):
            batch.put_item(Item={k: v for k, v in feature.items() if v is not None})


def reset_account(user_id: str, quota: int, plan: str) -> None:
    """Create or reset a user: the balance, the plan, and a ledger that starts with one grant."""
    if plan not in PLANS or quota < 0:
        raise ValueError("plan must be one of free/pro/enterprise and quota >= 0")
    settings = Settings.from_env()
    dynamodb = boto3.resource("dynamodb")
    ledger = dynamodb.Table(settings.ledger_table)
    old = ledger.query(KeyConditionExpression=Key("user_id").eq(user_id)).get("Items", [])
    with ledger.batch_writer() as batch:
        for row in old:
            batch.delete_item(Key={"user_id": user_id, "entry_id": row["entry_id"]})
    now = now_iso()
    dynamodb.Table(settings.accounts_table).put_item(
        Item={"user_id": user_id, "quota_balance": quota, "plan": plan, "created_at": now,
              "updated_at": now}
    )
    ledger.put_item(Item={"user_id": user_id, "entry_id": f"grant#{now}", "kind": "grant",
                          "amount": quota, "created_at": now})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--features-table", required=True)
    parser.add_argument("--pipelines-table", required=True)
    parser.add_argument("--catalog-dir", type=Path, default=DEFAULT_CATALOG)
    args = parser.parse_args()
    seed_catalog(args.catalog_dir, args.features_table, args.pipelines_table)
    print(f"seeded {args.features_table} and {args.pipelines_table} from {args.catalog_dir}")


if __name__ == "__main__":
    main()
