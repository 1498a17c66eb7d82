"""Accounts and their ledger (reads; money moves only inside TaskStore transactions)."""

from __future__ import annotations

from typing import Any

from pixelbatch.models import Account, LedgerEntry
from pixelbatch.repos.dynamo import newest_first_page, plain


class AccountStore:
    def __init__(self, dynamodb: Any, *, accounts_table: str, ledger_table: str) -> None:
        self._accounts = dynamodb.Table(accounts_table)
        self._ledger = dynamodb.Table(ledger_table)

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


def entry_from_row(row: dict[str, Any]) -> LedgerEntry:
    r = plain(row)
    return LedgerEntry(
        entry_id=r["entry_id"], kind=r["kind"], amount=r["amount"], created_at=r["created_at"],
        task_id=r.get("task_id"), items=list(r.get("items", [])),
    )
