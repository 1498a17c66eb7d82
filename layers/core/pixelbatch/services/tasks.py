"""Creating, reading and downloading tasks. Creation charges and writes in one transaction,
then starts processing; if the start fails, the charge is undone before the client hears."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from pixelbatch.clock import now_iso
from pixelbatch.errors import (
    ImageNotAllowed,
    NoFailedItems,
    NotABatchTask,
    NothingToDownload,
    NotTaskOwner,
    StartFailed,
    StateConflict,
    TaskCancelled,
    TaskFinished,
    TaskNotFound,
)
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
from pixelbatch.observability import logger
from pixelbatch.repos.accounts import AccountStore
from pixelbatch.repos.executions import ExecutionStarter
from pixelbatch.repos.objects import ObjectStore
from pixelbatch.repos.tasks import ItemFailureRecord, TaskPage, TaskStore
from pixelbatch.services.catalog import CatalogService, RateLimiter, validate_inputs
from pixelbatch.settings import Settings

if TYPE_CHECKING:
    from pixelbatch.contract import BatchBody, SingleBody
    from pixelbatch.services.webhooks import WebhookAnnouncer  # only where webhooks are set up

DEFAULT_PLAN = "free"
OPEN = (TaskStatus.PENDING, TaskStatus.PROCESSING)
START_FAILED = ItemFailureRecord("start_failed", StartFailed.default_message, retryable=True)
TASK_ID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class RetryResult:
    count: int
    quota_cost: int


@dataclass(frozen=True)
class TaskDetails:
    task: Task
    items: list[Item]
    output_urls: dict[int, str]


class TaskService:
    def __init__(
        self,
        settings: Settings,
        *,
        tasks: TaskStore,
        accounts: AccountStore,
        catalog: CatalogService,
        limiter: RateLimiter,
        executions: ExecutionStarter,
        objects: ObjectStore,
        webhooks: WebhookAnnouncer | None = None,
    ) -> None:
        self._settings = settings
        self._webhooks = webhooks
        self._tasks = tasks
        self._accounts = accounts
        self._catalog = catalog
        self._limiter = limiter
        self._executions = executions
        self._objects = objects

    # ------------------------------------------------------------------ create

    def create(self, user_id: str, body: BatchBody | SingleBody) -> Task:
        # Imported by the routes that create: the reads need neither pydantic nor requests.
        from pixelbatch.contract import BatchBody

        images = body.input_images
        self._check_inputs(user_id, images)
        account = self._accounts.get(user_id)
        feature = self._catalog.usable_feature(
            body.feature_id, account.plan if account else DEFAULT_PLAN
        )
        inputs = validate_inputs(feature, body.input_data)
        self._limiter.check(user_id, feature)
        steps = self._catalog.pipeline_steps(feature)
        task, items = new_task(
            user_id, feature.feature_id, feature.quota_cost, images, inputs, steps,
            is_batch=isinstance(body, BatchBody),
        )
        self._tasks.create_charged(task, items)
        self._start_or_undo(task, [ItemRef(item.index, item.attempt) for item in items])
        return task

    def _check_inputs(self, user_id: str, images: Sequence[str]) -> None:
        from pixelbatch.imaging.fetch import check_input_url_syntax

        for position, url in enumerate(images):
            try:
                check_input_url_syntax(
                    url,
                    owner_id=user_id,
                    uploads_bucket=self._settings.uploads_bucket,
                    allowed_hosts=self._settings.image_url_allowlist,
                )
            except ItemFailure as failure:
                raise ImageNotAllowed(f"第{position + 1}张图片: {failure.message}") from failure

    def _start_or_undo(self, task: Task, refs: list[ItemRef]) -> None:
        try:
            self._executions.start(task.task_id, task.round, refs)
        except Exception as error:
            logger.exception("execution start failed; undoing the charge", task_id=task.task_id)
            self._undo_start(task, refs)
            raise StartFailed() from error

    def _undo_start(self, task: Task, refs: list[ItemRef]) -> None:
        """Fail and refund the round's items, so the user can simply retry them later. The
        task ends here only if no item is left running (an earlier round's finalize ends it
        otherwise) and no success needs a ZIP: an earlier round's Finalize may have found this
        round's items pending and left the ZIP to it, so a closing execution writes it (or, if
        that cannot start either, the reconciler)."""
        for ref in refs:
            self._tasks.fail_item(task, ref, START_FAILED)
        _, items = self._tasks.get_with_items(task.task_id)
        running = any(item.status in UNFINISHED_ITEM_STATUSES for item in items)
        zipping = not running and any(item.status is ItemStatus.SUCCESS for item in items)
        status = TaskStatus.PROCESSING if running or zipping else final_status(items)
        written = self._tasks.set_status(task.task_id, status, allowed_from=OPEN,
                                         error_message=StartFailed.default_message)
        if written and zipping:
            self._close(task, for_round=True)
        elif written and not running:
            self._announce(task, status, items)

    def _announce(self, task: Task, status: TaskStatus, items: list[Item]) -> None:
        """A task the failed start finished is announced like any other; the client hears
        503 whatever happens here."""
        if self._webhooks is None:
            return
        try:
            self._webhooks.task_finished(
                task, status,
                succeeded=sum(1 for item in items if item.status is ItemStatus.SUCCESS),
                failed=sum(1 for item in items if item.status is ItemStatus.FAILED),
            )
        except Exception:
            logger.exception("finished task not announced", task_id=task.task_id)

    # ------------------------------------------------------------------ retry and cancel

    def retry_failed(self, user_id: str, task_id: str) -> RetryResult:
        task, items = self.owned(user_id, task_id)
        if not task.is_batch:
            raise NotABatchTask()
        if task.status is TaskStatus.CANCELLED:
            raise TaskCancelled()
        failed = [item for item in items if item.status is ItemStatus.FAILED]
        if not failed:
            raise NoFailedItems()
        try:
            new_round = self._tasks.requeue_charged(task, failed)
        except StateConflict as lost:
            # Another retry (or a cancel) changed the task first; it charged, we must not.
            raise NoFailedItems() from lost
        requeued = replace(task, round=new_round)
        refs = [ItemRef(item.index, item.attempt + 1) for item in failed]
        self._start_or_undo(requeued, refs)
        return RetryResult(count=len(failed), quota_cost=len(failed) * task.quota_cost)

    def cancel(self, user_id: str, task_id: str) -> int:
        """Settle in DynamoDB first (late finishers then lose their condition), then stop the
        executions as a courtesy and finalize. Returns the quota refunded by this call."""
        task, _ = self.owned(user_id, task_id)
        # Listed for the reconciler until finalized, should this call die midway.
        if task.status not in OPEN or not self._tasks.set_status(
            task_id, TaskStatus.CANCELLED, allowed_from=OPEN, keep_open=True
        ):
            raise TaskFinished()
        _, items = self._tasks.get_with_items(task_id)
        refs = [
            ItemRef(item.index, item.attempt)
            for item in items
            if item.status in UNFINISHED_ITEM_STATUSES
        ]
        refunded = self._tasks.cancel_items(task, refs)
        for round_no in range(1, task.round + 1):
            self._executions.stop(task_id, round_no, cause="cancelled by user")
        self._close(task)
        return len(refunded) * task.quota_cost

    def _close(self, task: Task, *, for_round: bool = False) -> None:
        """The stopped (or never started) rounds never reach their Finalize, so one more
        execution runs it: the successes get their ZIP and manifest, and the task leaves the
        reconciler's list. If it cannot start, the task is still listed and the reconciler
        finalizes it later."""
        try:
            self._executions.start_closing(task.task_id, task.round, for_round=for_round)
        except Exception:
            logger.exception("closing execution not started", task_id=task.task_id)

    # ------------------------------------------------------------------ read

    def owned(self, user_id: str, task_id: str) -> tuple[Task, list[Item]]:
        if not TASK_ID.fullmatch(task_id):
            raise TaskNotFound()
        task, items = self._tasks.get_with_items(task_id)
        if task is None:
            raise TaskNotFound()
        if task.owner_id != user_id:
            raise NotTaskOwner()
        return task, items

    def details(self, user_id: str, task_id: str) -> TaskDetails:
        task, items = self.owned(user_id, task_id)
        urls = {
            item.index: self._objects.presign_get(self._settings.outputs_bucket, item.output_key)
            for item in items
            if item.status is ItemStatus.SUCCESS and item.output_key
        }
        return TaskDetails(task=task, items=items, output_urls=urls)

    def list(self, user_id: str, *, limit: int, cursor: str | None) -> TaskPage:
        return self._tasks.list_for_owner(user_id, limit=limit, cursor=cursor)

    def download_url(self, user_id: str, task_id: str) -> str:
        task, _ = self.owned(user_id, task_id)
        if not task.is_batch:
            raise NotABatchTask()
        if not task.zip_key or task.batch_success == 0:
            raise NothingToDownload()
        return self._objects.presign_get(
            self._settings.outputs_bucket, task.zip_key,
            attachment_name=f"batch_{task.task_id}.zip",
        )


def new_task(
    user_id: str,
    feature_id: str,
    cost: int,
    images: Sequence[str],
    inputs: dict[str, Any],
    steps: list[dict[str, Any]],
    *,
    is_batch: bool,
) -> tuple[Task, list[Item]]:
    now = now_iso()
    task_id = uuid.uuid4().hex
    task = Task(
        task_id=task_id, owner_id=user_id, feature_id=feature_id, status=TaskStatus.PENDING,
        is_batch=is_batch, batch_total=len(images), batch_success=0, batch_failed=0,
        batch_cancelled=0, quota_cost=cost, round=1, input_data=inputs, steps=steps,
        created_at=now, updated_at=now,
    )
    items = [
        Item(task_id=task_id, index=index, input_url=url, status=ItemStatus.PENDING, attempt=1,
             updated_at=now)
        for index, url in enumerate(images)
    ]
    return task, items
