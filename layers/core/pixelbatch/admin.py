"""Operator commands for accounts, run with the operator's own AWS credentials (IAM decides who
may: attach the stack's OperatorPolicy). Each change is one DynamoDB transaction with a ledger
row that records the reason, the operator's identity and a request id; repeating a command with
the same --request-id does nothing the second time.

Examples:
  python -m pixelbatch.admin --stack pixelbatch-prod show USER_SUB
  python -m pixelbatch.admin --stack pixelbatch-prod grant USER_SUB 500 --reason "order 1042"
  python -m pixelbatch.admin --stack pixelbatch-prod deduct USER_SUB 20 --reason "chargeback"
  python -m pixelbatch.admin --stack pixelbatch-prod plan USER_SUB pro --reason "upgrade"
  python -m pixelbatch.admin --stack pixelbatch-prod open USER_SUB --reason "trigger failed"

Table names come from --accounts-table/--ledger-table, else ACCOUNTS_TABLE/LEDGER_TABLE, else
the outputs of --stack. Results go to stdout as JSON; errors to stderr with exit code 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from collections.abc import Callable
from typing import Any

import boto3

from pixelbatch.errors import DomainError
from pixelbatch.models import PLANS
from pixelbatch.repos.accounts import AccountStore, Adjustment
from pixelbatch.services.lifecycle import AccountLifecycle
from pixelbatch.settings import AccountSettings
from pixelbatch.stack_outputs import stack_variables

EXIT_FAILED = 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pixelbatch.admin", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--stack", help="deployed stack whose outputs name the tables")
    parser.add_argument("--accounts-table")
    parser.add_argument("--ledger-table")
    parser.add_argument("--actor", help="who to record (default: your IAM identity's ARN)")
    commands = parser.add_subparsers(dest="command", required=True)

    show = commands.add_parser("show", help="balance, plan and recent ledger rows")
    show.add_argument("user_id")
    show.add_argument("--limit", type=int, default=20)

    opened = commands.add_parser("open", help="create a missing account (signup grant)")
    opened.add_argument("user_id")
    opened.add_argument("--plan", choices=PLANS, default="free")
    opened.add_argument("--grant", type=int, default=None,
                        help="initial quota (default: SIGNUP_GRANT_QUOTA or 0)")
    opened.add_argument("--reason", required=True)

    for name, text in (("grant", "add quota"), ("deduct", "remove quota (never below 0)")):
        command = commands.add_parser(name, help=text)
        command.add_argument("user_id")
        command.add_argument("amount", type=int)
        _adjustment_arguments(command)

    plan = commands.add_parser("plan", help="change the plan")
    plan.add_argument("user_id")
    plan.add_argument("plan", choices=PLANS)
    _adjustment_arguments(plan)
    return parser


def _adjustment_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("--reason", required=True, help="kept in the ledger row")
    command.add_argument("--request-id", default=None,
                         help="makes a rerun harmless (default: a new random id)")


def _settings(args: argparse.Namespace) -> AccountSettings:
    env = {name: os.environ[name] for name in ("ACCOUNTS_TABLE", "LEDGER_TABLE",
                                               "SIGNUP_GRANT_QUOTA") if name in os.environ}
    if args.stack and not (args.accounts_table and args.ledger_table):
        env |= stack_variables(args.stack, ("ACCOUNTS_TABLE", "LEDGER_TABLE"))
    if args.accounts_table:
        env["ACCOUNTS_TABLE"] = args.accounts_table
    if args.ledger_table:
        env["LEDGER_TABLE"] = args.ledger_table
    if not {"ACCOUNTS_TABLE", "LEDGER_TABLE"} <= set(env):
        raise SystemExit("name the stack (--stack) or both tables (--accounts-table, "
                         "--ledger-table, or ACCOUNTS_TABLE and LEDGER_TABLE)")
    return AccountSettings.from_env(env)


def _actor(args: argparse.Namespace) -> str:
    if args.actor:
        return str(args.actor)
    return str(boto3.client("sts").get_caller_identity()["Arn"])


def _adjustment(args: argparse.Namespace, actor: str) -> Adjustment:
    return Adjustment(args.request_id or uuid.uuid4().hex, args.reason, actor)


def _show(store: AccountStore, args: argparse.Namespace) -> dict[str, Any]:
    account = store.get(args.user_id)
    if account is None:
        return {"user_id": args.user_id, "exists": False}
    entries, _ = store.recent_entries(args.user_id, limit=args.limit)
    return {
        "user_id": account.user_id, "exists": True, "balance": account.quota_balance,
        "plan": account.plan,
        "ledger": [{"entry_id": e.entry_id, "kind": e.kind, "amount": e.amount,
                    "created_at": e.created_at} for e in entries],
    }


def _change(
    lifecycle: AccountLifecycle, args: argparse.Namespace, actor: str
) -> dict[str, Any]:
    adjustment = _adjustment(args, actor)
    actions: dict[str, Callable[[], None]] = {
        "grant": lambda: lifecycle.grant(args.user_id, args.amount, adjustment),
        "deduct": lambda: lifecycle.deduct(args.user_id, args.amount, adjustment),
        "plan": lambda: lifecycle.change_plan(args.user_id, args.plan, adjustment),
    }
    actions[args.command]()
    return {"user_id": args.user_id, "applied": args.command,
            "request_id": adjustment.request_id}


def _open(lifecycle: AccountLifecycle, settings: AccountSettings, args: argparse.Namespace,
          actor: str) -> dict[str, Any]:
    grant = settings.signup_grant_quota if args.grant is None else args.grant
    created = lifecycle.open(args.user_id, plan=args.plan, grant=grant, reason=args.reason,
                             actor=actor)
    return {"user_id": args.user_id, "created": created}


def run(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse, act, and return what happened (raises DomainError when refused)."""
    args = _parser().parse_args(argv)
    settings = _settings(args)
    store = AccountStore(boto3.resource("dynamodb"), accounts_table=settings.accounts_table,
                         ledger_table=settings.ledger_table)
    if args.command == "show":
        return _show(store, args)
    lifecycle = AccountLifecycle(store, signup_grant=settings.signup_grant_quota)
    actor = _actor(args)
    if args.command == "open":
        return _open(lifecycle, settings, args, actor)
    return _change(lifecycle, args, actor)


def main(argv: list[str] | None = None) -> int:
    try:
        result = run(argv)
    except DomainError as error:
        print(f"refused: {error.message}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted: nothing was left half done (each change is one transaction)",
              file=sys.stderr)
        return 130
    print(json.dumps(result, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
