"""Domain records. Repositories build them from rows; services and handlers never see raw rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class TaskStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    SUCCESS = "success"
    PARTIAL_SUCCESS = "partial_success"
    FAILED = "failed"
    CANCELLED = "cancelled"


class ItemStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"


UNFINISHED_ITEM_STATUSES = frozenset({ItemStatus.PENDING, ItemStatus.PROCESSING})
OPEN_STATUSES = frozenset({TaskStatus.PENDING, TaskStatus.PROCESSING})
FINISHED_TASK_STATUSES = frozenset(
    {TaskStatus.SUCCESS, TaskStatus.PARTIAL_SUCCESS, TaskStatus.FAILED, TaskStatus.CANCELLED}
)

PLANS = ("free", "pro", "enterprise")


@dataclass(frozen=True)
class RateLimitPolicy:
    limit: int
    window_seconds: int


@dataclass(frozen=True)
class Feature:
    feature_id: str
    name: str
    description: str
    is_enabled: bool
    deleted_at: str | None
    quota_cost: int
    rate_limit: RateLimitPolicy
    pipeline_id: str
    allowed_plans: tuple[str, ...]
    parameters_schema: dict[str, Any]


@dataclass(frozen=True)
class Account:
    user_id: str
    quota_balance: int
    plan: str


@dataclass(frozen=True)
class Task:
    task_id: str
    owner_id: str
    feature_id: str
    status: TaskStatus
    is_batch: bool
    batch_total: int
    batch_success: int
    batch_failed: int
    batch_cancelled: int
    quota_cost: int
    round: int
    input_data: dict[str, Any]
    steps: list[dict[str, Any]]
    created_at: str
    updated_at: str
    zip_key: str | None = None
    error_message: str | None = None


@dataclass(frozen=True)
class Item:
    task_id: str
    index: int
    input_url: str
    status: ItemStatus
    attempt: int
    updated_at: str
    output_key: str | None = None
    output_ext: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    retryable: bool | None = None


@dataclass(frozen=True)
class ItemRef:
    """One attempt of one item, as it travels through the state machine."""

    index: int
    attempt: int


@dataclass(frozen=True)
class LedgerEntry:
    entry_id: str
    kind: str
    amount: int
    created_at: str
    task_id: str | None = None
    items: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Webhook:
    """An endpoint a user registered to hear about their tasks, with its signing secret."""

    webhook_id: str
    owner_id: str
    url: str
    secret: str
    created_at: str


def final_status(items: list[Item]) -> TaskStatus:
    """The status a batch ends in, from its settled items."""
    succeeded = sum(1 for item in items if item.status is ItemStatus.SUCCESS)
    if succeeded == len(items):
        return TaskStatus.SUCCESS
    return TaskStatus.PARTIAL_SUCCESS if succeeded else TaskStatus.FAILED
