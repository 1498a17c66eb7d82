"""The task aggregate: one task row plus one row per item in the same partition, and every
money movement that goes with a status change, each in one transaction."""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from boto3.dynamodb.conditions import Key

from pixelbatch.clock import now, now_iso
from pixelbatch.errors import QuotaInsufficient, TaskChanged, TaskExists
from pixelbatch.models import OPEN_STATUSES, Item, ItemRef, ItemStatus, Task, TaskStatus
from pixelbatch.repos.dynamo import (
    TransactionCancelled,
    newest_first_page,
    plain,
    query_all,
    storable,
    transact,
    update_conditionally,
)

TASK_SK = "task"
# Only unfinished tasks carry open_shard, which keeps the by_open index small. Its value spreads
# them over this many index partitions (one partition takes about 1,000 writes a second). The
# reconciler reads shards 0..OPEN_SHARDS-1, so the count may grow but must never shrink while
# open tasks still carry a higher shard.
OPEN_SHARDS = 16
# A TransactWriteItems holds at most 100 actions; bulk refunds go in chunks that stay well below.
REFUND_CHUNK = 40


def open_shard(task_id: str) -> str:
    """The by_open partition of a task: fixed per task, so every write of it agrees."""
    return shard_key(zlib.crc32(task_id.encode()) % OPEN_SHARDS)


def shard_key(shard: int) -> str:
    return f"open#{shard}"


def task_pk(task_id: str) -> str:
    return f"task#{task_id}"


def item_sk(index: int) -> str:
    return f"item#{index:04d}"


def charge_entry_id(task_id: str, round_no: int) -> str:
    return f"charge#{task_id}#r{round_no}"


def refund_entry_id(task_id: str, index: int, attempt: int) -> str:
    return f"refund#{task_id}#{index:04d}#{attempt}"


@dataclass(frozen=True)
class ItemFailureRecord:
    code: str
    message: str
    retryable: bool


@dataclass(frozen=True)
class TaskPage:
    tasks: list[Task]
    next_cursor: str | None


class TaskStore:
    def __init__(
        self, dynamodb: Any, *, tasks_table: str, accounts_table: str, ledger_table: str,
        retention_seconds: int | None = None,
    ) -> None:
        self._retention_seconds = retention_seconds
        self._client = dynamodb.meta.client
        self._tasks = dynamodb.Table(tasks_table)
        self._tasks_name = tasks_table
        self._accounts_name = accounts_table
        self._ledger_name = ledger_table

    # ------------------------------------------------------------------ reads

    def get(self, task_id: str) -> Task | None:
        row = self._tasks.get_item(
            Key={"pk": task_pk(task_id), "sk": TASK_SK}, ConsistentRead=True
        ).get("Item")
        return task_from_row(row) if row and not expired(row) else None

    def get_with_items(self, task_id: str) -> tuple[Task | None, list[Item]]:
        """One query: items sort before the task row ("item#..." < "task")."""
        rows = query_all(
            self._tasks, KeyConditionExpression=Key("pk").eq(task_pk(task_id)), ConsistentRead=True
        )
        rows = [row for row in rows if not expired(row)]
        task = next((task_from_row(r) for r in rows if r["sk"] == TASK_SK), None)
        return task, [item_from_row(r) for r in rows if r["sk"] != TASK_SK]

    def stale_open_task_ids(self, updated_before: str) -> list[str]:
        """Unfinished tasks whose row has not changed since `updated_before`, from every shard."""
        rows = [
            row
            for shard in range(OPEN_SHARDS)
            for row in query_all(
                self._tasks,
                IndexName="by_open",
                KeyConditionExpression=Key("open_shard").eq(shard_key(shard))
                & Key("updated_at").lt(updated_before),
            )
        ]
        return [row["pk"].removeprefix("task#") for row in rows]

    def list_for_owner(self, owner_id: str, *, limit: int, cursor: str | None) -> TaskPage:
        rows, next_cursor = newest_first_page(
            self._tasks, index="by_owner", owner=("owner_id", owner_id), limit=limit,
            cursor=cursor, cursor_keys=("pk", "sk", "owner_id", "created_at"),
        )
        tasks = [task_from_row(row) for row in rows if not expired(row)]
        return TaskPage(tasks=tasks, next_cursor=next_cursor)

    # ------------------------------------------------------------------ creation

    def create_charged(self, task: Task, items: Sequence[Item]) -> None:
        """Charge the whole batch and write the task and its items, all or nothing."""
        total = task.quota_cost * len(items)
        actions = [
            self._debit(task.owner_id, total),
            self._ledger_put(
                task.owner_id,
                charge_entry_id(task.task_id, task.round),
                kind="charge",
                amount=total,
                task_id=task.task_id,
                items=[item.index for item in items],
            ),
            {"Put": {"TableName": self._tasks_name,
                     "Item": task_to_row(task) | self._expiry(),
                     "ConditionExpression": "attribute_not_exists(pk)"}},
            *(
                {"Put": {"TableName": self._tasks_name,
                         "Item": item_to_row(item) | self._expiry()}}
                for item in items
            ),
        ]
        try:
            transact(self._client, actions)
        except TransactionCancelled as cancelled:
            if cancelled.failed_at(0):
                raise QuotaInsufficient() from cancelled
            raise TaskExists() from cancelled

    def requeue_charged(self, task: Task, failed: Sequence[Item]) -> int:
        """Charge the failed items again and move them failed -> pending with a new attempt, in
        one transaction conditional on the round read, so concurrent retries charge once."""
        new_round = task.round + 1
        now = now_iso()
        actions = [
            self._debit(task.owner_id, task.quota_cost * len(failed)),
            self._ledger_put(
                task.owner_id, charge_entry_id(task.task_id, new_round), kind="charge",
                amount=task.quota_cost * len(failed), task_id=task.task_id,
                items=[item.index for item in failed],
            ),
            {"Update": {
                "TableName": self._tasks_name,
                "Key": {"pk": task_pk(task.task_id), "sk": TASK_SK},
                "UpdateExpression": "SET #r = :new, #s = :processing, updated_at = :now, "
                "open_shard = :open ADD batch_failed :minus",
                "ConditionExpression": "#r = :old AND #s <> :cancelled",
                "ExpressionAttributeNames": {"#r": "round", "#s": "status"},
                "ExpressionAttributeValues": {
                    ":new": new_round, ":old": task.round, ":now": now,
                    ":processing": TaskStatus.PROCESSING.value,
                    ":cancelled": TaskStatus.CANCELLED.value, ":minus": -len(failed),
                    ":open": open_shard(task.task_id),
                },
            }},
            *(self._requeue_item_action(task.task_id, item, now) for item in failed),
        ]
        try:
            transact(self._client, actions)
        except TransactionCancelled as cancelled:
            if cancelled.failed_at(0):
                raise QuotaInsufficient() from cancelled
            raise TaskChanged() from cancelled
        return new_round

    def _requeue_item_action(self, task_id: str, item: Item, now: str) -> dict[str, Any]:
        return {"Update": {
            "TableName": self._tasks_name,
            "Key": {"pk": task_pk(task_id), "sk": item_sk(item.index)},
            "UpdateExpression": "SET #s = :pending, attempt = :next, updated_at = :now "
            "REMOVE error_code, error_message, retryable, output_key, output_ext",
            "ConditionExpression": "#s = :failed AND attempt = :attempt",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": {
                ":pending": ItemStatus.PENDING.value, ":failed": ItemStatus.FAILED.value,
                ":attempt": item.attempt, ":next": item.attempt + 1, ":now": now,
            },
        }}

    # ------------------------------------------------------------------ item transitions

    def mark_processing(self, task_id: str) -> bool:
        return self._update_if(
            {"pk": task_pk(task_id), "sk": TASK_SK},
            UpdateExpression="SET #s = :processing, updated_at = :now",
            ConditionExpression="#s IN (:pending, :processing)",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={
                ":processing": TaskStatus.PROCESSING.value,
                ":pending": TaskStatus.PENDING.value,
                ":now": now_iso(),
            },
        )

    def claim_item(self, task_id: str, ref: ItemRef) -> bool:
        """pending -> processing for this attempt; False if someone else moved it first."""
        return self._update_if(
            {"pk": task_pk(task_id), "sk": item_sk(ref.index)},
            UpdateExpression="SET #s = :processing, updated_at = :now",
            ConditionExpression="#s = :pending AND attempt = :attempt",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={
                ":processing": ItemStatus.PROCESSING.value,
                ":pending": ItemStatus.PENDING.value,
                ":attempt": ref.attempt,
                ":now": now_iso(),
            },
        )

    def get_item(self, task_id: str, index: int) -> Item | None:
        row = self._tasks.get_item(
            Key={"pk": task_pk(task_id), "sk": item_sk(index)}, ConsistentRead=True
        ).get("Item")
        return item_from_row(row) if row else None

    def complete_item(self, task_id: str, ref: ItemRef, *, output_key: str, ext: str) -> bool:
        """processing -> success and count it, atomically; False for a late or duplicate writer."""
        now = now_iso()
        actions = [
            {"Update": {
                "TableName": self._tasks_name,
                "Key": {"pk": task_pk(task_id), "sk": item_sk(ref.index)},
                "UpdateExpression": "SET #s = :success, output_key = :key, output_ext = :ext, "
                "updated_at = :now REMOVE error_code, error_message, retryable",
                "ConditionExpression": "#s = :processing AND attempt = :attempt",
                "ExpressionAttributeNames": {"#s": "status"},
                "ExpressionAttributeValues": {
                    ":success": ItemStatus.SUCCESS.value,
                    ":processing": ItemStatus.PROCESSING.value,
                    ":attempt": ref.attempt, ":key": output_key, ":ext": ext, ":now": now,
                },
            }},
            self._count(task_id, {"batch_success": 1}, now),
        ]
        try:
            transact(self._client, actions)
        except TransactionCancelled:
            return False
        return True

    def fail_item(self, task: Task, ref: ItemRef, failure: ItemFailureRecord) -> bool:
        """pending|processing -> failed, counted and refunded, atomically and exactly once."""
        now = now_iso()
        actions = [
            {"Update": {
                "TableName": self._tasks_name,
                "Key": {"pk": task_pk(task.task_id), "sk": item_sk(ref.index)},
                "UpdateExpression": "SET #s = :failed, error_code = :code, error_message = :msg, "
                "retryable = :retryable, updated_at = :now",
                "ConditionExpression": "#s IN (:pending, :processing) AND attempt = :attempt",
                "ExpressionAttributeNames": {"#s": "status"},
                "ExpressionAttributeValues": {
                    ":failed": ItemStatus.FAILED.value, ":pending": ItemStatus.PENDING.value,
                    ":processing": ItemStatus.PROCESSING.value, ":attempt": ref.attempt,
                    ":code": failure.code, ":msg": failure.message,
                    ":retryable": failure.retryable, ":now": now,
                },
            }},
            self._count(task.task_id, {"batch_failed": 1}, now),
            self._refund_entry(task, ref),
            self._credit(task.owner_id, task.quota_cost),
        ]
        try:
            transact(self._client, actions)
        except TransactionCancelled:
            return False
        return True

    def cancel_items(self, task: Task, refs: Sequence[ItemRef]) -> list[ItemRef]:
        """Move unfinished items to cancelled and refund each attempt once, in chunks that fit a
        transaction; an item that finished meanwhile is skipped. Returns the refunded refs."""
        refunded: list[ItemRef] = []
        for chunk in _chunks(list(refs), REFUND_CHUNK):
            refunded.extend(self._cancel_chunk(task, chunk))
        return refunded

    def _cancel_chunk(self, task: Task, chunk: list[ItemRef]) -> list[ItemRef]:
        pending = list(chunk)
        while pending:
            now = now_iso()
            # One credit for the chunk: a transaction may touch the account row only once.
            actions = [
                self._count(task.task_id, {"batch_cancelled": len(pending)}, now),
                self._credit(task.owner_id, task.quota_cost * len(pending)),
            ]
            for ref in pending:
                actions.append(self._cancel_item_action(task.task_id, ref, now))
                actions.append(self._refund_entry(task, ref))
            try:
                transact(self._client, actions)
                return pending
            except TransactionCancelled as cancelled:
                # Drop the items that finished meanwhile (their update lost its condition).
                lost = {i for i, ref in enumerate(pending) if cancelled.failed_at(2 + 2 * i)}
                if not lost:
                    raise
                pending = [ref for i, ref in enumerate(pending) if i not in lost]
        return []

    def _cancel_item_action(self, task_id: str, ref: ItemRef, now: str) -> dict[str, Any]:
        return {"Update": {
            "TableName": self._tasks_name,
            "Key": {"pk": task_pk(task_id), "sk": item_sk(ref.index)},
            "UpdateExpression": "SET #s = :cancelled, updated_at = :now",
            "ConditionExpression": "#s IN (:pending, :processing) AND attempt = :attempt",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": {
                ":cancelled": ItemStatus.CANCELLED.value, ":pending": ItemStatus.PENDING.value,
                ":processing": ItemStatus.PROCESSING.value, ":attempt": ref.attempt, ":now": now,
            },
        }}

    # ------------------------------------------------------------------ task status

    def set_status(
        self,
        task_id: str,
        status: TaskStatus,
        *,
        allowed_from: Sequence[TaskStatus] | None,
        expected_round: int | None = None,
        zip_key: str | None = None,
        error_message: str | None = None,
        keep_open: bool = False,
    ) -> bool:
        """Conditional status change. The task stays listed for the reconciler while it is
        pending or processing, or when `keep_open` says its items are not all settled yet."""
        names = {"#s": "status"}
        values: dict[str, Any] = {":status": status.value, ":now": now_iso()}
        sets = ["#s = :status", "updated_at = :now"]
        conditions = ["attribute_exists(pk)"]
        listed = keep_open or status in OPEN_STATUSES
        if listed:
            sets.append("open_shard = :open")
            values[":open"] = open_shard(task_id)
        if zip_key is not None:
            sets.append("zip_key = :zip")
            values[":zip"] = zip_key
        if error_message is not None:
            sets.append("error_message = :err")
            values[":err"] = error_message
        if allowed_from:
            keys = [f":from{i}" for i in range(len(allowed_from))]
            values.update({k: s.value for k, s in zip(keys, allowed_from, strict=True)})
            conditions.append(f"#s IN ({', '.join(keys)})")
        if expected_round is not None:
            conditions.append("#r = :round")
            names["#r"] = "round"
            values[":round"] = expected_round
        return self._update_if(
            {"pk": task_pk(task_id), "sk": TASK_SK},
            UpdateExpression="SET " + ", ".join(sets)
            + ("" if listed else " REMOVE open_shard"),
            ConditionExpression=" AND ".join(conditions),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def claim_announcement(self, task_id: str, round_no: int) -> bool:
        """Mark the final status of round ``round_no`` as announced; True for the one caller
        that does it first (finalize may run twice, and the reconciler too)."""
        return self._update_if(
            {"pk": task_pk(task_id), "sk": TASK_SK},
            UpdateExpression="SET announced_round = :r",
            ConditionExpression="attribute_exists(pk) AND "
            "(attribute_not_exists(announced_round) OR announced_round < :r)",
            ExpressionAttributeValues={":r": round_no},
        )

    def release_announcement(self, task_id: str, round_no: int) -> None:
        """Undo a claim whose messages could not be queued, so that a retry announces again."""
        self._update_if(
            {"pk": task_pk(task_id), "sk": TASK_SK},
            UpdateExpression="SET announced_round = :before",
            ConditionExpression="announced_round = :r",
            ExpressionAttributeValues={":r": round_no, ":before": round_no - 1},
        )

    # ------------------------------------------------------------------ building blocks

    def _expiry(self) -> dict[str, int]:
        """DynamoDB TTL: the rows go when the outputs bucket deletes their objects. The ledger
        keeps every charge and refund for good."""
        if self._retention_seconds is None:
            return {}
        return {"expires_at": int(now().timestamp()) + self._retention_seconds}

    def _update_if(self, key: dict[str, str], **update: Any) -> bool:
        """A conditional update; False when the condition did not hold."""
        return update_conditionally(self._tasks, Key=key, **update) is not None

    def _debit(self, user_id: str, amount: int) -> dict[str, Any]:
        return {"Update": {
            "TableName": self._accounts_name,
            "Key": {"user_id": user_id},
            "UpdateExpression": "SET quota_balance = quota_balance - :amount, updated_at = :now",
            "ConditionExpression": "attribute_exists(user_id) AND quota_balance >= :amount",
            "ExpressionAttributeValues": {":amount": amount, ":now": now_iso()},
        }}

    def _refund_entry(self, task: Task, ref: ItemRef) -> dict[str, Any]:
        """The ledger row's key makes a second refund of the same attempt impossible."""
        return self._ledger_put(
            task.owner_id,
            refund_entry_id(task.task_id, ref.index, ref.attempt),
            kind="refund",
            amount=task.quota_cost,
            task_id=task.task_id,
            items=[ref.index],
        )

    def _credit(self, user_id: str, amount: int) -> dict[str, Any]:
        return {"Update": {
            "TableName": self._accounts_name,
            "Key": {"user_id": user_id},
            "UpdateExpression": "ADD quota_balance :amount",
            "ExpressionAttributeValues": {":amount": amount},
        }}

    def _ledger_put(
        self, user_id: str, entry_id: str, *, kind: str, amount: int, task_id: str,
        items: list[int],
    ) -> dict[str, Any]:
        return {"Put": {
            "TableName": self._ledger_name,
            "Item": {"user_id": user_id, "entry_id": entry_id, "kind": kind, "amount": amount,
                     "task_id": task_id, "items": items, "created_at": now_iso()},
            "ConditionExpression": "attribute_not_exists(entry_id)",
        }}

    def _count(self, task_id: str, deltas: dict[str, int], now: str) -> dict[str, Any]:
        adds = ", ".join(f"{name} :{name}" for name in deltas)
        return {"Update": {
            "TableName": self._tasks_name,
            "Key": {"pk": task_pk(task_id), "sk": TASK_SK},
            "UpdateExpression": f"SET updated_at = :now ADD {adds}",
            "ExpressionAttributeValues": {":now": now, **{f":{k}": v for k, v in deltas.items()}},
        }}


# ---------------------------------------------------------------------- row mapping


def expired(row: dict[str, Any]) -> bool:
    """Past its TTL. DynamoDB deletes such rows only within a few days, and by then the
    task's objects are gone: read them as gone already."""
    expires_at = row.get("expires_at")
    return expires_at is not None and int(expires_at) <= int(now().timestamp())



def task_to_row(task: Task) -> dict[str, Any]:
    row: dict[str, Any] = {
        "pk": task_pk(task.task_id), "sk": TASK_SK, "id": task.task_id,
        "owner_id": task.owner_id, "feature_id": task.feature_id, "status": task.status.value,
        "is_batch": task.is_batch, "batch_total": task.batch_total,
        "batch_success": task.batch_success, "batch_failed": task.batch_failed,
        "batch_cancelled": task.batch_cancelled, "quota_cost": task.quota_cost,
        "round": task.round, "input_data": storable(task.input_data),
        "steps": storable(task.steps),
        "created_at": task.created_at, "updated_at": task.updated_at,
    }
    if task.status in OPEN_STATUSES:
        row["open_shard"] = open_shard(task.task_id)
    return _with_optional(row, zip_key=task.zip_key, error_message=task.error_message)


def task_from_row(row: dict[str, Any]) -> Task:
    r = plain(row)
    return Task(
        task_id=r["id"], owner_id=r["owner_id"], feature_id=r["feature_id"],
        status=TaskStatus(r["status"]), is_batch=bool(r["is_batch"]),
        batch_total=r["batch_total"], batch_success=r.get("batch_success", 0),
        batch_failed=r.get("batch_failed", 0), batch_cancelled=r.get("batch_cancelled", 0),
        quota_cost=r["quota_cost"], round=r.get("round", 1), input_data=r.get("input_data", {}),
        steps=r.get("steps", []), created_at=r["created_at"], updated_at=r["updated_at"],
        zip_key=r.get("zip_key"), error_message=r.get("error_message"),
    )


def item_to_row(item: Item) -> dict[str, Any]:
    row: dict[str, Any] = {
        "pk": task_pk(item.task_id), "sk": item_sk(item.index), "task_id": item.task_id,
        "index": item.index, "input_url": item.input_url, "status": item.status.value,
        "attempt": item.attempt, "updated_at": item.updated_at,
    }
    return _with_optional(
        row, output_key=item.output_key, output_ext=item.output_ext,
        error_code=item.error_code, error_message=item.error_message, retryable=item.retryable,
    )


def item_from_row(row: dict[str, Any]) -> Item:
    r = plain(row)
    return Item(
        task_id=r["task_id"], index=r["index"], input_url=r["input_url"],
        status=ItemStatus(r["status"]), attempt=r["attempt"], updated_at=r["updated_at"],
        output_key=r.get("output_key"), output_ext=r.get("output_ext"),
        error_code=r.get("error_code"), error_message=r.get("error_message"),
        retryable=r.get("retryable"),
    )


def _with_optional(row: dict[str, Any], **optional: Any) -> dict[str, Any]:
    row.update({key: value for key, value in optional.items() if value is not None})
    return row


def _chunks(values: list[ItemRef], size: int) -> Iterator[list[ItemRef]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
