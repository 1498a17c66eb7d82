"""Accounts and their ledger. Task charges and refunds move money inside TaskStore transactions;
this store moves it for the account's own lifecycle (opening, admin grants, deductions, plan
changes), each as one transaction with its ledger row, so the money invariant holds for both."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from boto3.dynamodb.conditions import Key

from pixelbatch.clock import now_iso
from pixelbatch.errors import (
    AccountNotFound,
    AdjustmentAlreadyApplied,
    ConcurrentUpdate,
    QuotaInsufficient,
)
from pixelbatch.models import Account, LedgerEntry
from pixelbatch.repos.dynamo import (
    TransactionCancelled,
    newest_first_page,
    plain,
    query_all,
    transact,
)

SIGNUP_ENTRY_ID = "grant#signup"


@dataclass(frozen=True)
class Adjustment:
    """One operator decision about an account: why, who, and the key that makes it happen once."""

    request_id: str
    reason: str
    actor: str


class AccountStore:
    def __init__(self, dynamodb: Any, *, accounts_table: str, ledger_table: str) -> None:
        self._client = dynamodb.meta.client
        self._accounts = dynamodb.Table(accounts_table)
        self._ledger = dynamodb.Table(ledger_table)
        self._accounts_name = accounts_table
        self._ledger_name = ledger_table

    # ------------------------------------------------------------------ reads

    def get(self, user_id: str) -> Account | None:
        row = self._accounts.get_item(Key={"user_id": user_id}, ConsistentRead=True).get("Item")
        if not row:
            return None
        r = plain(row)
        return Account(user_id=r["user_id"], quota_balance=r["quota_balance"], plan=r["plan"])

    def recent_entries(
        self, user_id: str, *, limit: int, cursor: str | None = None
    ) -> tuple[list[LedgerEntry], str | None]:
        rows, next_cursor = newest_first_page(
            self._ledger, index="by_time", owner=("user_id", user_id), limit=limit,
            cursor=cursor, cursor_keys=("user_id", "entry_id", "created_at"),
        )
        return [entry_from_row(row) for row in rows], next_cursor

    # ------------------------------------------------------------------ lifecycle

    def open(self, user_id: str, *, plan: str, grant: int, reason: str, actor: str) -> bool:
        """Create the account with its signup grant; False when it already exists (a trigger
        delivered twice, or an operator opening an account the trigger already made)."""
        now = now_iso()
        actions = [
            {"Put": {
                "TableName": self._accounts_name,
                "Item": {"user_id": user_id, "quota_balance": grant, "plan": plan,
                         "created_at": now, "updated_at": now},
                "ConditionExpression": "attribute_not_exists(user_id)",
            }},
            self._ledger_put(user_id, SIGNUP_ENTRY_ID, kind="grant", amount=grant, now=now,
                             reason=reason, actor=actor),
        ]
        try:
            transact(self._client, actions)
        except TransactionCancelled:
            return False
        return True

    def adjust_balance(self, user_id: str, amount: int, adjustment: Adjustment) -> None:
        """Add `amount` (negative deducts, never below zero) with a `grant` or `deduct` row."""
        now = now_iso()
        kind = "grant" if amount >= 0 else "deduct"
        condition = "attribute_exists(user_id)"
        values: dict[str, Any] = {":amount": amount, ":now": now}
        if amount < 0:
            condition += " AND quota_balance >= :needed"
            values[":needed"] = -amount
        actions = [
            {"Update": {
                "TableName": self._accounts_name,
                "Key": {"user_id": user_id},
                "UpdateExpression": "SET updated_at = :now ADD quota_balance :amount",
                "ConditionExpression": condition,
                "ExpressionAttributeValues": values,
            }},
            self._ledger_put(user_id, _adjustment_entry_id(kind, adjustment), kind=kind,
                             amount=abs(amount), now=now, reason=adjustment.reason,
                             actor=adjustment.actor),
        ]
        self._run_adjustment(user_id, actions, short_of_quota=amount < 0)

    def change_plan(self, user_id: str, plan: str, adjustment: Adjustment) -> None:
        """Set the plan, with a zero-amount `plan` row saying from what, to what and why."""
        now = now_iso()
        current = self.get(user_id)
        if current is None:
            raise AccountNotFound()
        actions = [
            {"Update": {
                "TableName": self._accounts_name,
                "Key": {"user_id": user_id},
                "UpdateExpression": "SET #p = :plan, updated_at = :now",
                "ConditionExpression": "attribute_exists(user_id) AND #p = :old",
                "ExpressionAttributeNames": {"#p": "plan"},
                "ExpressionAttributeValues": {":plan": plan, ":old": current.plan, ":now": now},
            }},
            self._ledger_put(user_id, _adjustment_entry_id("plan", adjustment), kind="plan",
                             amount=0, now=now, reason=adjustment.reason, actor=adjustment.actor,
                             extra={"plan_from": current.plan, "plan_to": plan}),
        ]
        self._run_adjustment(user_id, actions, short_of_quota=False)

    def erase(self, user_id: str) -> None:
        """Delete the account and its whole ledger. Only the local stack's dev users use this."""
        rows = query_all(self._ledger, KeyConditionExpression=Key("user_id").eq(user_id),
                         ProjectionExpression="entry_id")
        with self._ledger.batch_writer() as batch:
            for row in rows:
                batch.delete_item(Key={"user_id": user_id, "entry_id": row["entry_id"]})
        self._accounts.delete_item(Key={"user_id": user_id})

    # ------------------------------------------------------------------ building blocks

    def _run_adjustment(
        self, user_id: str, actions: list[dict[str, Any]], *, short_of_quota: bool
    ) -> None:
        try:
            transact(self._client, actions)
        except TransactionCancelled as cancelled:
            if cancelled.failed_at(1):
                raise AdjustmentAlreadyApplied() from cancelled
            if self.get(user_id) is None:
                raise AccountNotFound() from cancelled
            if short_of_quota:
                raise QuotaInsufficient() from cancelled
            raise ConcurrentUpdate() from cancelled

    def _ledger_put(
        self, user_id: str, entry_id: str, *, kind: str, amount: int, now: str, reason: str,
        actor: str, extra: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        return {"Put": {
            "TableName": self._ledger_name,
            "Item": {"user_id": user_id, "entry_id": entry_id, "kind": kind, "amount": amount,
                     "reason": reason, "actor": actor, "created_at": now, **(extra or {})},
            "ConditionExpression": "attribute_not_exists(entry_id)",
        }}


def _adjustment_entry_id(kind: str, adjustment: Adjustment) -> str:
    return f"{kind}#admin#{adjustment.request_id}"


def entry_from_row(row: dict[str, Any]) -> LedgerEntry:
    r = plain(row)
    return LedgerEntry(
        entry_id=r["entry_id"], kind=r["kind"], amount=r["amount"], created_at=r["created_at"],
        task_id=r.get("task_id"), items=list(r.get("items", [])),
    )
