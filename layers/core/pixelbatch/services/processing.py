"""What the state machine's Lambdas do: mark a round processing, process one item attempt
idempotently, record a failure the item Lambda could not record, and finalize the batch."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit

from pixelbatch.clock import iso
from pixelbatch.imaging.failures import ItemFailure
from pixelbatch.models import (
    UNFINISHED_ITEM_STATUSES,
    Item,
    ItemRef,
    ItemStatus,
    Task,
    TaskStatus,
    final_status,
)
from pixelbatch.observability import logger, metrics
from pixelbatch.repos.events import EventPublisher
from pixelbatch.repos.objects import ObjectStore
from pixelbatch.repos.tasks import ItemFailureRecord, TaskStore
from pixelbatch.settings import Settings
from pixelbatch.zipstream import ZipMember, write_zip_to_s3

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from pixelbatch.imaging.fetch import FetchPolicy
    from pixelbatch.imaging.pipeline import Rendered
    from pixelbatch.services.webhooks import WebhookAnnouncer  # only where webhooks are set

# Errors the state machine reports when the item Lambda itself died, mapped to item failures.
_LAMBDA_FAILURES = {
    "States.Timeout": ItemFailureRecord("timeout", "处理超时", retryable=True),
    "Sandbox.Timedout": ItemFailureRecord("timeout", "处理超时", retryable=True),
}
_INTERNAL_FAILURE = ItemFailureRecord("internal_error", "处理失败，请重试", retryable=True)
_STUCK_FAILURE = ItemFailureRecord("interrupted", "处理中断，配额已退还，请重试", retryable=True)


# requests and Pillow load on the first item, not at cold start: of the functions that build
# this service, only the item worker fetches and renders.
def fetch_input(
    url: str, *, owner_id: str, uploads_bucket: str, s3_client: S3Client, policy: FetchPolicy
) -> bytes:
    from pixelbatch.imaging import fetch

    return fetch.fetch_input(url, owner_id=owner_id, uploads_bucket=uploads_bucket,
                             s3_client=s3_client, policy=policy)


def run_pipeline(data: bytes, steps: list[dict[str, Any]], inputs: dict[str, Any]) -> Rendered:
    from pixelbatch.imaging import pipeline

    return pipeline.run_pipeline(data, steps, inputs)


def output_key(task_id: str, ref: ItemRef, ext: str) -> str:
    """Deterministic per task/item/attempt, so a duplicate invocation overwrites, never adds."""
    return f"outputs/{task_id}/{ref.index:04d}-a{ref.attempt}.{ext}"


def zip_key(task: Task) -> str:
    return f"zips/{task.task_id}/round-{task.round}.zip"


def result_name(item: Item) -> str:
    return f"result_{item.index + 1}.{item.output_ext}"


@dataclass(frozen=True)
class ReconcileReport:
    settled_items: int
    finalized_tasks: int


@dataclass(frozen=True)
class Outcome:
    status: str
    detail: str | None = None


class ProcessingService:
    def __init__(
        self,
        settings: Settings,
        *,
        tasks: TaskStore,
        objects: ObjectStore,
        fetch_policy: FetchPolicy,
        events: EventPublisher,
        webhooks: WebhookAnnouncer | None = None,
    ) -> None:
        self._settings = settings
        self._tasks = tasks
        self._objects = objects
        self._fetch_policy = fetch_policy
        self._events = events
        self._webhooks = webhooks

    def start_round(self, task_id: str) -> Outcome:
        started = self._tasks.mark_processing(task_id)
        return Outcome("processing" if started else "skipped")

    # ------------------------------------------------------------------ one item

    def process_item(self, task_id: str, ref: ItemRef) -> Outcome:
        task = self._tasks.get(task_id)
        item = self._tasks.get_item(task_id, ref.index)
        if task is None or item is None:
            return Outcome("missing")
        if not self._own_attempt(task_id, item, ref):
            return Outcome(_status_of(self._tasks.get_item(task_id, ref.index)), "skipped")
        try:
            data = fetch_input(
                item.input_url,
                owner_id=task.owner_id,
                uploads_bucket=self._settings.uploads_bucket,
                s3_client=self._objects.client,
                policy=self._fetch_policy,
            )
            rendered = run_pipeline(data, task.steps, task.input_data)
        except ItemFailure as failure:
            record = ItemFailureRecord(failure.code, failure.message, failure.retryable)
            self._tasks.fail_item(task, ref, record)
            return Outcome(ItemStatus.FAILED.value, failure.code)
        key = output_key(task_id, ref, rendered.ext)
        self._objects.put(
            self._settings.outputs_bucket, key, rendered.data, content_type=rendered.content_type
        )
        if self._tasks.complete_item(task_id, ref, output_key=key, ext=rendered.ext):
            return Outcome(ItemStatus.SUCCESS.value)
        current = self._tasks.get_item(task_id, ref.index)
        if current and current.status is ItemStatus.SUCCESS and current.output_key == key:
            # An overlapping delivery of this same attempt won; the output is its output too.
            return Outcome(ItemStatus.SUCCESS.value, "duplicate")
        # Cancelled (or settled by the reconciler) while we worked: the output does not count.
        self._objects.delete(self._settings.outputs_bucket, key)
        return Outcome(_status_of(current), "late")

    def _own_attempt(self, task_id: str, item: Item, ref: ItemRef) -> bool:
        """Claim the attempt, or carry on with it when this is a redelivered invocation."""
        if item.attempt != ref.attempt:
            return False
        if item.status is ItemStatus.PENDING and self._tasks.claim_item(task_id, ref):
            return True
        current = self._tasks.get_item(task_id, ref.index)
        return (
            current is not None
            and current.attempt == ref.attempt
            and current.status is ItemStatus.PROCESSING
        )

    def record_failure(self, task_id: str, ref: ItemRef, error: str | None) -> Outcome:
        task = self._tasks.get(task_id)
        if task is None:
            return Outcome("missing")
        record = _LAMBDA_FAILURES.get(error or "", _INTERNAL_FAILURE)
        logger.warning("item failed outside the worker", task_id=task_id, error=error,
                       index=ref.index, attempt=ref.attempt)
        if self._tasks.fail_item(task, ref, record):
            return Outcome(ItemStatus.FAILED.value, record.code)
        return Outcome(_status_of(self._tasks.get_item(task_id, ref.index)), "skipped")

    # ------------------------------------------------------------------ the batch

    def finalize(self, task_id: str) -> Outcome:
        """Tally from the item rows. Safe to run twice and while another round still runs:
        it writes only when every item is settled and the round it read is still current."""
        task, items = self._tasks.get_with_items(task_id)
        if task is None:
            return Outcome("missing")
        if any(item.status in UNFINISHED_ITEM_STATUSES for item in items):
            return Outcome("waiting")
        successes = [item for item in items if item.status is ItemStatus.SUCCESS]
        key = self._write_zip(task, items) if successes else None
        status = task.status if task.status is TaskStatus.CANCELLED else final_status(items)
        written = self._tasks.set_status(
            task_id, status, allowed_from=(task.status,), expected_round=task.round, zip_key=key
        )
        failed = sum(1 for item in items if item.status is ItemStatus.FAILED)
        if written and status is not task.status:
            self._events.batch_finished(task, status, succeeded=len(successes), failed=failed)
        if written and self._webhooks is not None:
            # Also when a cancelled task is finalized; the announcer queues each round once.
            self._webhooks.task_finished(task, status, succeeded=len(successes), failed=failed)
        return Outcome(status.value)

    def finalize_round(self, task_id: str, round_items: Sequence[ItemRef]) -> Outcome:
        """Finalize after a round's Map. Nothing of the round runs any more, so an attempt of it
        still unfinished was abandoned (its failure could not be recorded, or its iteration never
        started because the Map failed): settle it now, failed and refunded, rather than leave it
        to the reconciler."""
        task, items = self._tasks.get_with_items(task_id)
        if task is None:
            return Outcome("missing")
        of_round = set(round_items)
        abandoned = [
            ItemRef(item.index, item.attempt) for item in items
            if item.status in UNFINISHED_ITEM_STATUSES
            and ItemRef(item.index, item.attempt) in of_round
        ]
        if abandoned:
            logger.warning("settling attempts the round left unfinished", task_id=task_id,
                           items=[ref.index for ref in abandoned])
            self._settle(task, abandoned)
        return self.finalize(task_id)

    def reconcile(self, now: datetime) -> ReconcileReport:
        """Settle items stuck unfinished past the deadline (a stopped execution, a dead Lambda)
        as failed and refunded, then finalize their tasks. Safe to run at any time: every
        transition it makes is conditional, exactly like the worker's."""
        cutoff = iso(now - timedelta(seconds=self._settings.stuck_after_seconds))
        settled = finalized = 0
        for task_id in self._tasks.stale_open_task_ids(cutoff):
            task, items = self._tasks.get_with_items(task_id)
            if task is None:
                continue
            stuck = [
                ItemRef(item.index, item.attempt)
                for item in items
                if item.status in UNFINISHED_ITEM_STATUSES and item.updated_at < cutoff
            ]
            settled += self._settle(task, stuck)
            finalized += self.finalize(task_id).status not in ("waiting", "missing")
        return ReconcileReport(settled_items=settled, finalized_tasks=finalized)

    def _settle(self, task: Task, stuck: list[ItemRef]) -> int:
        if task.status is TaskStatus.CANCELLED:
            return len(self._tasks.cancel_items(task, stuck))
        return sum(self._tasks.fail_item(task, ref, _STUCK_FAILURE) for ref in stuck)

    def _write_zip(self, task: Task, items: list[Item]) -> str:
        key = zip_key(task)
        started = time.perf_counter()
        write_zip_to_s3(
            self._objects.client,
            bucket=self._settings.outputs_bucket,
            key=key,
            members=self._zip_members(task, items),
            content_disposition=f'attachment; filename="batch_{task.task_id}.zip"',
        )
        metrics.add_metric(name="ZipBuildMilliseconds", unit=MetricUnit.Milliseconds,
                           value=(time.perf_counter() - started) * 1000)
        return key

    def _zip_members(self, task: Task, items: list[Item]) -> Iterator[ZipMember]:
        for item in items:
            if item.status is ItemStatus.SUCCESS and item.output_key:
                yield ZipMember(
                    name=result_name(item), bucket=self._settings.outputs_bucket,
                    key=item.output_key,
                )
        yield ZipMember(name="manifest.json", data=manifest(task, items))


def manifest(task: Task, items: list[Item]) -> bytes:
    entries = [
        {
            "index": item.index,
            "input_url": item.input_url,
            "status": item.status.value,
            "attempt": item.attempt,
            "file": result_name(item) if item.status is ItemStatus.SUCCESS else None,
            "error_code": item.error_code,
            "error_message": item.error_message,
        }
        for item in items
    ]
    document = {"task_id": task.task_id, "feature_id": task.feature_id, "items": entries}
    return json.dumps(document, ensure_ascii=False, indent=2).encode()


def _status_of(item: Item | None) -> str:
    return item.status.value if item else "missing"
