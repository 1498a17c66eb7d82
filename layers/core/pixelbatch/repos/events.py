"""Completion events on EventBridge, for whoever wants to know a batch finished."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from pixelbatch.models import Task, TaskStatus
from pixelbatch.observability import logger

SOURCE = "pixelbatch"
DETAIL_TYPE = "BatchFinished"


class EventPublisher:
    def __init__(self, events: Any, *, bus_name: str) -> None:
        self._events = events
        self._bus = bus_name

    def batch_finished(
        self, task: Task, status: TaskStatus, *, succeeded: int, failed: int
    ) -> None:
        """Best effort: the task row is the truth; a lost event must not fail the batch."""
        detail = {
            "task_id": task.task_id, "user_id": task.owner_id, "feature_id": task.feature_id,
            "status": status.value, "batch_total": task.batch_total,
            "batch_success": succeeded, "batch_failed": failed, "round": task.round,
        }
        try:
            self._events.put_events(Entries=[{
                "Source": SOURCE, "DetailType": DETAIL_TYPE, "Detail": json.dumps(detail),
                "EventBusName": self._bus, "Resources": [],
            }])
        except (BotoCoreError, ClientError):
            logger.exception("completion event not published", task_id=task.task_id)
