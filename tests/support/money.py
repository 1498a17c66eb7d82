"""The money rules as checks over raw table rows.

Everything here reads the Accounts, Ledger and Tasks tables whole and decides from the rows
alone, without the product's own read paths, so a bug in those cannot hide a bug in the writes.
Each check returns a list of readable problems (empty when the rule holds).

Two readers give the same rows: `api_reader` (consistent scans through the DynamoDB API) and
`moto_reader` (moto's in-memory tables, read between requests: the same rows without the
emulator's ~25 ms per scan, which matters when the rules are checked after every step).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from moto.core import DEFAULT_ACCOUNT_ID
from moto.dynamodb.models import dynamodb_backends
from moto.dynamodb.models.dynamo_type import DynamoType
from pixelbatch.settings import Settings

Reader = Callable[[str, tuple[str, ...]], list[dict[str, Any]]]

OPEN_TASK = frozenset({"pending", "processing"})
UNFINISHED_ITEM = frozenset({"pending", "processing"})
REFUNDED_ITEM = frozenset({"failed", "cancelled"})
# States whose current attempt keeps its charge (for now, or for good).
CHARGED_ITEM = frozenset({"success", "pending", "processing"})

_CHARGE_ID = re.compile(r"charge#(?P<task>[0-9a-f]{32})#r(?P<round>\d+)")
_REFUND_ID = re.compile(r"refund#(?P<task>[0-9a-f]{32})#(?P<index>\d{4})#(?P<attempt>\d+)")


@dataclass(frozen=True)
class ItemRow:
    index: int
    status: str
    attempt: int


@dataclass(frozen=True)
class TaskRow:
    task_id: str
    owner_id: str
    status: str
    is_batch: bool
    quota_cost: int
    round: int
    batch_total: int
    batch_success: int
    batch_failed: int
    batch_cancelled: int
    open_shard: bool
    zipped: bool
    items: tuple[ItemRow, ...]

    def count(self, *statuses: str) -> int:
        return sum(1 for item in self.items if item.status in statuses)

    @property
    def unfinished(self) -> tuple[ItemRow, ...]:
        return tuple(item for item in self.items if item.status in UNFINISHED_ITEM)


@dataclass(frozen=True)
class LedgerRow:
    user_id: str
    entry_id: str
    kind: str
    amount: int
    task_id: str | None
    items: tuple[int, ...]


@dataclass(frozen=True)
class Snapshot:
    balances: dict[str, int]
    ledger: tuple[LedgerRow, ...]
    tasks: dict[str, TaskRow]

    def entries(self, *, user_id: str | None = None, task_id: str | None = None,
                kind: str | None = None) -> list[LedgerRow]:
        return [
            row for row in self.ledger
            if (user_id is None or row.user_id == user_id)
            and (task_id is None or row.task_id == task_id)
            and (kind is None or row.kind == kind)
        ]

    def net(self, *, user_id: str | None = None, task_id: str | None = None) -> int:
        """Charges minus refunds (grants excluded)."""
        sign = {"charge": 1, "refund": -1}
        return sum(
            sign.get(row.kind, 0) * row.amount
            for row in self.entries(user_id=user_id, task_id=task_id)
        )


def expected_final_status(items: Iterable[ItemRow]) -> str:
    """What a settled, not cancelled batch must say about itself."""
    statuses = [item.status for item in items]
    succeeded = statuses.count("success")
    if succeeded == len(statuses):
        return "success"
    return "partial_success" if succeeded else "failed"


# ---------------------------------------------------------------------- reading


def take_snapshot(read: Reader, settings: Settings) -> Snapshot:
    """The three tables, just the attributes the rules need. Take it between requests: the
    tables are read one after the other."""
    accounts = read(settings.accounts_table, ("user_id", "quota_balance"))
    ledger = read(
        settings.ledger_table, ("user_id", "entry_id", "kind", "amount", "task_id", "items")
    )
    task_rows = read(settings.tasks_table, _TASK_ATTRIBUTES)
    items: dict[str, list[ItemRow]] = defaultdict(list)
    heads: dict[str, dict[str, Any]] = {}
    for row in task_rows:
        task_id = str(row["pk"]).removeprefix("task#")
        if row["sk"] == "task":
            heads[task_id] = row
        else:
            items[task_id].append(
                ItemRow(index=int(row["index"]), status=str(row["status"]),
                        attempt=int(row["attempt"]))
            )
    tasks = {
        task_id: TaskRow(
            task_id=task_id, owner_id=str(head["owner_id"]), status=str(head["status"]),
            is_batch=bool(head["is_batch"]), quota_cost=int(head["quota_cost"]),
            round=int(head.get("round", 1)), batch_total=int(head["batch_total"]),
            batch_success=int(head.get("batch_success", 0)),
            batch_failed=int(head.get("batch_failed", 0)),
            batch_cancelled=int(head.get("batch_cancelled", 0)),
            open_shard="open_shard" in head,
            zipped="zip_key" in head,
            items=tuple(sorted(items.pop(task_id, []), key=lambda item: item.index)),
        )
        for task_id, head in heads.items()
    }
    if items:
        raise AssertionError(f"item rows without a task row: {sorted(items)}")
    return Snapshot(
        balances={str(row["user_id"]): int(row["quota_balance"]) for row in accounts},
        ledger=tuple(
            LedgerRow(
                user_id=str(row["user_id"]), entry_id=str(row["entry_id"]), kind=str(row["kind"]),
                amount=int(row["amount"]),
                task_id=str(row["task_id"]) if "task_id" in row else None,
                items=tuple(int(i) for i in row.get("items", [])),
            )
            for row in sorted(ledger, key=lambda row: (row["user_id"], row["entry_id"]))
        ),
        tasks=tasks,
    )


_TASK_ATTRIBUTES = (
    "pk", "sk", "owner_id", "status", "is_batch", "quota_cost", "round", "batch_total",
    "batch_success", "batch_failed", "batch_cancelled", "open_shard", "zip_key", "index",
    "attempt",
)


def api_reader(dynamodb: Any) -> Reader:
    """Full consistent scans through the API (a boto3 DynamoDB resource)."""
    tables: dict[str, Any] = {}

    def read(table_name: str, attributes: tuple[str, ...]) -> list[dict[str, Any]]:
        if table_name not in tables:
            tables[table_name] = dynamodb.Table(table_name)
        table = tables[table_name]
        names = {f"#a{i}": name for i, name in enumerate(attributes)}
        kwargs: dict[str, Any] = {
            "ConsistentRead": True,
            "ProjectionExpression": ", ".join(names),
            "ExpressionAttributeNames": names,
        }
        rows: list[dict[str, Any]] = []
        while True:
            page = table.scan(**kwargs)
            rows.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return rows
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    return read


def moto_reader(region: str, account_id: str = DEFAULT_ACCOUNT_ID) -> Reader:
    """The rows moto holds in memory for this account and region (moto in process only)."""

    def read(table_name: str, attributes: tuple[str, ...]) -> list[dict[str, Any]]:
        table = dynamodb_backends[account_id][region].get_table(table_name)
        return [
            {name: _python(item.attrs[name]) for name in attributes if name in item.attrs}
            for item in table.all_items()
        ]

    return read


def _python(value: DynamoType) -> Any:
    kind, raw = value.type, value.value
    if kind == "N":
        return int(raw) if raw.lstrip("-").isdigit() else float(raw)
    if kind == "L":
        return [_python(v) for v in raw]
    if kind == "M":
        return {k: _python(v) for k, v in raw.items()}
    return raw


# ---------------------------------------------------------------------- the rules


def user_problems(snap: Snapshot, initial: Mapping[str, int]) -> list[str]:
    """Rule 3 per user, at every moment: initial - balance == charges - refunds, balance >= 0,
    and the ledger starts with exactly one grant of the initial amount."""
    problems: list[str] = []
    for user_id, quota in initial.items():
        balance = snap.balances.get(user_id)
        if balance is None:
            problems.append(f"{user_id}: no account row")
            continue
        grants = snap.entries(user_id=user_id, kind="grant")
        if [g.amount for g in grants] != [quota]:
            problems.append(f"{user_id}: grants {[g.amount for g in grants]}, expected [{quota}]")
        kinds = {row.kind for row in snap.entries(user_id=user_id)}
        if not kinds <= {"grant", "charge", "refund"}:
            problems.append(f"{user_id}: unknown ledger kinds {sorted(kinds)}")
        net = snap.net(user_id=user_id)
        if quota - balance != net:
            problems.append(
                f"{user_id}: initial {quota} - balance {balance} = {quota - balance}, "
                f"but ledger charges - refunds = {net}"
            )
        if balance < 0:
            problems.append(f"{user_id}: negative balance {balance}")
    return problems


def attempt_problems(snap: Snapshot) -> list[str]:
    """Rules 1 and 2 per attempt: every attempt an item has had was charged once; every attempt
    that ended failed or cancelled (all but the current one, and the current one when it is
    failed or cancelled) was refunded once, and no other attempt was."""
    problems: list[str] = []
    for task in snap.tasks.values():
        charged, charge_problems = _charged_attempts(snap, task)
        problems += charge_problems
        refunded, refund_problems = _refunded_attempts(snap, task)
        problems += refund_problems
        for item in task.items:
            want_charged = set(range(1, item.attempt + 1))
            got_charged = {a for (i, a) in charged if i == item.index}
            if got_charged != want_charged:
                problems.append(
                    f"task {task.task_id} item {item.index} ({item.status}, attempt "
                    f"{item.attempt}): charged attempts {sorted(got_charged)}, "
                    f"expected {sorted(want_charged)}"
                )
            want_refunded = set(range(1, item.attempt))
            if item.status in REFUNDED_ITEM:
                want_refunded.add(item.attempt)
            got_refunded = {a for (i, a) in refunded if i == item.index}
            if got_refunded != want_refunded:
                problems.append(
                    f"task {task.task_id} item {item.index} ({item.status}, attempt "
                    f"{item.attempt}): refunded attempts {sorted(got_refunded)}, "
                    f"expected {sorted(want_refunded)}"
                )
        strays = {key for key in refunded if key[0] not in {item.index for item in task.items}}
        if strays:
            problems.append(f"task {task.task_id}: refunds for unknown items {sorted(strays)}")
        net = snap.net(task_id=task.task_id)
        held = task.quota_cost * task.count(*CHARGED_ITEM)
        if net != held:
            problems.append(
                f"task {task.task_id}: net charge {net}, expected quota_cost {task.quota_cost} x "
                f"{task.count(*CHARGED_ITEM)} items that are success/pending/processing = {held}"
            )
    known = set(snap.tasks)
    for row in snap.ledger:
        if row.kind in ("charge", "refund") and row.task_id not in known:
            problems.append(f"ledger {row.entry_id}: task {row.task_id} does not exist")
    return problems


def _charged_attempts(snap: Snapshot, task: TaskRow) -> tuple[set[tuple[int, int]], list[str]]:
    """The (item, attempt) pairs the task's charge rows paid for. A charge row covers one round;
    an item's attempt number goes up by one each round that includes it."""
    problems: list[str] = []
    rounds: dict[int, LedgerRow] = {}
    for row in snap.entries(task_id=task.task_id, kind="charge"):
        found = _CHARGE_ID.fullmatch(row.entry_id)
        if not found or found["task"] != task.task_id:
            problems.append(f"charge {row.entry_id}: id does not name task {task.task_id}")
            continue
        rounds[int(found["round"])] = row
        if row.user_id != task.owner_id:
            problems.append(f"charge {row.entry_id}: billed to {row.user_id}, not the owner")
        if row.amount != task.quota_cost * len(row.items) or len(set(row.items)) != len(row.items):
            problems.append(
                f"charge {row.entry_id}: amount {row.amount} for items {list(row.items)} at cost "
                f"{task.quota_cost}"
            )
    if sorted(rounds) != list(range(1, task.round + 1)):
        problems.append(
            f"task {task.task_id} (round {task.round}): charge rows for rounds {sorted(rounds)}"
        )
    attempts: Counter[int] = Counter()
    charged: set[tuple[int, int]] = set()
    for round_no in sorted(rounds):
        for index in rounds[round_no].items:
            attempts[index] += 1
            charged.add((index, attempts[index]))
    return charged, problems


def _refunded_attempts(
    snap: Snapshot, task: TaskRow
) -> tuple[Counter[tuple[int, int]], list[str]]:
    problems: list[str] = []
    refunded: Counter[tuple[int, int]] = Counter()
    for row in snap.entries(task_id=task.task_id, kind="refund"):
        found = _REFUND_ID.fullmatch(row.entry_id)
        if not found or found["task"] != task.task_id:
            problems.append(f"refund {row.entry_id}: id does not name task {task.task_id}")
            continue
        key = (int(found["index"]), int(found["attempt"]))
        refunded[key] += 1
        if row.user_id != task.owner_id:
            problems.append(f"refund {row.entry_id}: paid to {row.user_id}, not the owner")
        if row.items != (key[0],) or row.amount != task.quota_cost:
            problems.append(
                f"refund {row.entry_id}: amount {row.amount} items {list(row.items)}, expected "
                f"{task.quota_cost} for item {key[0]}"
            )
    for key, count in refunded.items():
        if count > 1:
            problems.append(f"task {task.task_id} item {key[0]} attempt {key[1]}: {count} refunds")
    return refunded, problems


def counter_problems(snap: Snapshot) -> list[str]:
    """The task row's counters (ADDed in the same transaction as each item transition, and
    batch_failed decremented by a retry) equal the item rows in those states."""
    problems: list[str] = []
    for task in snap.tasks.values():
        indices = [item.index for item in task.items]
        if indices != list(range(task.batch_total)):
            problems.append(f"task {task.task_id}: batch_total {task.batch_total}, items {indices}")
        counters = {
            "success": task.batch_success,
            "failed": task.batch_failed,
            "cancelled": task.batch_cancelled,
        }
        for status, counter in counters.items():
            if counter != task.count(status):
                problems.append(
                    f"task {task.task_id}: batch_{status} = {counter}, but "
                    f"{task.count(status)} item rows are {status} "
                    f"({[item.status for item in task.items]})"
                )
    return problems


def status_problems(snap: Snapshot) -> list[str]:
    """Between requests: a task with an unfinished item is open (so finalize still has to run
    and the reconciler's by_open index still lists it); a finished, not cancelled task says
    what its items say; the by_open marker is present on every open task, and on no finished
    one except a cancelled task that its Finalize has not closed yet."""
    problems: list[str] = []
    for task in snap.tasks.values():
        statuses = [item.status for item in task.items]
        if task.unfinished and task.status not in OPEN_TASK:
            problems.append(
                f"task {task.task_id} is {task.status} (round {task.round}) while items are "
                f"still {statuses}"
            )
        if task.status in ("success", "partial_success", "failed") and not task.unfinished:
            want = expected_final_status(task.items)
            if task.status != want:
                problems.append(
                    f"task {task.task_id} is {task.status}, items {statuses} say {want}"
                )
        if task.open_shard != (task.status in OPEN_TASK) and task.status != "cancelled":
            problems.append(
                f"task {task.task_id} is {task.status} with open_shard={task.open_shard}"
            )
    return problems


def at_rest_problems(snap: Snapshot) -> list[str]:
    """Once everything has run: nothing unfinished, every task settled and closed (no longer
    listed for the reconciler, its ZIP written when anything succeeded, cancelled or not), and
    each task's net charge is quota_cost x its successful items."""
    problems: list[str] = []
    for task in snap.tasks.values():
        if task.unfinished or task.status in OPEN_TASK or task.open_shard:
            problems.append(
                f"at rest, task {task.task_id} is {task.status} (listed: {task.open_shard}) "
                f"with items {[item.status for item in task.items]}"
            )
        if task.count("success") and not task.zipped:
            problems.append(f"at rest, task {task.task_id} ({task.status}) has no ZIP")
        net = snap.net(task_id=task.task_id)
        if net != task.quota_cost * task.count("success"):
            problems.append(
                f"at rest, task {task.task_id}: net charge {net} != {task.quota_cost} x "
                f"{task.count('success')} successes"
            )
    return problems


def every_problem(snap: Snapshot, initial: Mapping[str, int]) -> list[str]:
    return (
        user_problems(snap, initial)
        + attempt_problems(snap)
        + counter_problems(snap)
        + status_problems(snap)
    )
