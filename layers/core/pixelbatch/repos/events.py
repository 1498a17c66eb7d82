"""Completion events on EventBridge, for whoever wants to know a batch finished."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import BotoCoreError, ClientError

from pixelbatch.models import Task, TaskStatus
from pixelbatch.observability import logger, metrics

SOURCE = "pixelbatch"
DETAIL_TYPE = "BatchFinished"
# Alarmed on: PutEvents answers 200 even when it rejects an entry (FailedEntryCount > 0).
UNPUBLISHED_METRIC = "CompletionEventsUnpublished"


class EventPublisher:
    def __init__(self, events: Any, *, bus_name: str) -> None:
        self._events = events
        self._bus = bus_name

    def batch_finished(
        self, task: Task, status: TaskStatus, *, succeeded: int, failed: int
    ) -> None:
        """Best effort: the task row is the truth; a lost event must not fail the batch, but it
        is logged and counted, never dropped silently."""
        detail = {
            "task_id": task.task_id, "user_id": task.owner_id, "feature_id": task.feature_id,
            "status": status.value, "batch_total": task.batch_total,
            "batch_success": succeeded, "batch_failed": failed, "round": task.round,
        }
        try:
            reply = self._events.put_events(Entries=[{
                "Source": SOURCE, "DetailType": DETAIL_TYPE, "Detail": json.dumps(detail),
                "EventBusName": self._bus, "Resources": [],
            }])
        except (BotoCoreError, ClientError):
            logger.exception("completion event not published", task_id=task.task_id)
            _count_unpublished(1)
            return
        rejected = [entry for entry in reply.get("Entries", []) if entry.get("ErrorCode")]
        failed = int(reply.get("FailedEntryCount", 0))
        if failed:
            logger.error("completion event rejected by EventBridge", task_id=task.task_id,
                         failed_entry_count=failed,
                         errors=[(e.get("ErrorCode"), e.get("ErrorMessage")) for e in rejected])
            _count_unpublished(failed)


def _count_unpublished(count: int) -> None:
    metrics.add_metric(name=UNPUBLISHED_METRIC, unit=MetricUnit.Count, value=count)
