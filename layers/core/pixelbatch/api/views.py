"""Reply shapes of the contract (field names are the clients': `userId`, `createdAt`, ...)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pixelbatch.models import Feature, Item, ItemStatus, LedgerEntry, Task, Webhook

if TYPE_CHECKING:  # the services are built, and so imported, on first use
    from pixelbatch.services.account import Upload
    from pixelbatch.services.tasks import TaskDetails


def created(task: Task) -> dict[str, Any]:
    reply = {
        "task_id": task.task_id,
        "batch_total": task.batch_total,
        "quota_cost": task.quota_cost * task.batch_total,
        "created_at": task.created_at,
    }
    if not task.is_batch:
        reply["status"] = task.status.value
    return reply


def task_summary(task: Task) -> dict[str, Any]:
    return {
        "id": task.task_id,
        "userId": task.owner_id,
        "feature_id": task.feature_id,
        "status": task.status.value,
        "is_batch": task.is_batch,
        "batch_total": task.batch_total,
        "batch_success": task.batch_success,
        "batch_failed": task.batch_failed,
        "batch_cancelled": task.batch_cancelled,
        "quota_cost": task.quota_cost,
        "createdAt": task.created_at,
        "updatedAt": task.updated_at,
    }


def task_details(details: TaskDetails) -> dict[str, Any]:
    task, items = details.task, details.items
    counts = {status: 0 for status in ItemStatus}
    for item in items:
        counts[item.status] += 1
    reply = {
        **task_summary(task),
        "batch_pending": counts[ItemStatus.PENDING],
        "batch_processing": counts[ItemStatus.PROCESSING],
        "input_data": task.input_data,
        "round": task.round,
        "error_message": task.error_message,
        "batch_items": [_item(item, details.output_urls.get(item.index)) for item in items],
    }
    if not task.is_batch and items:
        reply["output_url"] = details.output_urls.get(items[0].index)
        reply["error_message"] = task.error_message or items[0].error_message
    return reply


def _item(item: Item, output_url: str | None) -> dict[str, Any]:
    return {
        "index": item.index,
        "input_url": item.input_url,
        "status": item.status.value,
        "output_url": output_url,
        "error_message": item.error_message,
        "error_code": item.error_code,
        "retryable": item.retryable,
        "attempt": item.attempt,
    }


def ledger_entry(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "entry_id": entry.entry_id,
        "kind": entry.kind,
        "amount": entry.amount,
        "task_id": entry.task_id,
        "items": entry.items,
        "created_at": entry.created_at,
    }


def feature(item: Feature) -> dict[str, Any]:
    return {
        "feature_id": item.feature_id,
        "name": item.name,
        "description": item.description,
        "quota_cost": item.quota_cost,
        "rate_limit": {
            "limit": item.rate_limit.limit, "window_seconds": item.rate_limit.window_seconds,
        },
        "parameters_schema": item.parameters_schema,
    }


def upload(item: Upload) -> dict[str, Any]:
    return {
        "upload_url": item.upload_url,
        "input_url": item.input_url,
        "headers": item.headers,
        "expires_at": item.expires_at,
    }


def webhook(item: Webhook) -> dict[str, Any]:
    """An endpoint as listed: its secret is shown once, when it is created."""
    return {"webhook_id": item.webhook_id, "url": item.url, "created_at": item.created_at}


def webhook_created(item: Webhook) -> dict[str, Any]:
    return {**webhook(item), "secret": item.secret}
