"""Seed the feature catalog and (locally) reset dev accounts.

Deployed stack: `python -m pixelbatch.seed --stack pixelbatch-prod` (or name the tables with
--features-table/--pipelines-table); the local stack calls seed_catalog itself."""

from __future__ import annotations

import argparse
import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3

from pixelbatch.repos.accounts import AccountStore
from pixelbatch.services.lifecycle import AccountLifecycle
from pixelbatch.settings import AccountSettings
from pixelbatch.stack_outputs import stack_variables

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
    """Create or reset a dev user through the account lifecycle: the balance, the plan, and a
    ledger that starts with one grant."""
    settings = AccountSettings.from_env()
    store = AccountStore(boto3.resource("dynamodb"), accounts_table=settings.accounts_table,
                         ledger_table=settings.ledger_table)
    lifecycle = AccountLifecycle(store, signup_grant=settings.signup_grant_quota)
    lifecycle.reset(user_id, quota=quota, plan=plan)


def _table_names(args: argparse.Namespace) -> tuple[str, str]:
    if args.stack:
        found = stack_variables(args.stack, ("FEATURES_TABLE", "PIPELINES_TABLE"))
        return found["FEATURES_TABLE"], found["PIPELINES_TABLE"]
    if not (args.features_table and args.pipelines_table):
        sys.exit("name the stack (--stack) or both tables (--features-table, --pipelines-table)")
    return args.features_table, args.pipelines_table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stack", help="deployed stack whose outputs name the tables")
    parser.add_argument("--features-table")
    parser.add_argument("--pipelines-table")
    parser.add_argument("--catalog-dir", type=Path, default=DEFAULT_CATALOG)
    args = parser.parse_args(argv)
    features_table, pipelines_table = _table_names(args)
    seed_catalog(args.catalog_dir, features_table, pipelines_table)
    print(f"seeded {features_table} and {pipelines_table} from {args.catalog_dir}")


if __name__ == "__main__":
    main()
