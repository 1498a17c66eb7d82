"""A completion event EventBridge does not take is logged and counted, never dropped silently:
PutEvents answers 200 with FailedEntryCount > 0 when it rejects an entry."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from pixelbatch.models import Task, TaskStatus
from pixelbatch.observability import metrics
from pixelbatch.repos.events import UNPUBLISHED_METRIC, EventPublisher

TASK = Task(
    task_id="a" * 32, owner_id="u1", feature_id="basic_clean", status=TaskStatus.PROCESSING,
    is_batch=True, batch_total=2, batch_success=1, batch_failed=1, batch_cancelled=0,
    quota_cost=1, round=1, input_data={}, steps=[], created_at="t", updated_at="t",
)


class FakeEvents:
    def __init__(self, reply: dict[str, Any] | None = None, error: Exception | None = None
                 ) -> None:
        self.reply, self.error = reply, error
        self.sent: list[list[dict[str, Any]]] = []

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.sent.append(Entries)
        if self.error:
            raise self.error
        return self.reply or {"FailedEntryCount": 0, "Entries": [{"EventId": "1"}]}


@pytest.fixture(autouse=True)
def _fresh_metrics() -> Iterator[None]:
    metrics.clear_metrics()
    yield
    metrics.clear_metrics()


def unpublished() -> float:
    entry = metrics.metric_set.get(UNPUBLISHED_METRIC)
    return float(sum(entry["Value"])) if entry else 0.0


def publish(events: FakeEvents) -> None:
    EventPublisher(events, bus_name="default").batch_finished(
        TASK, TaskStatus.PARTIAL_SUCCESS, succeeded=1, failed=1)


def test_an_accepted_event_counts_nothing() -> None:
    events = FakeEvents()
    publish(events)
    assert len(events.sent) == 1 and unpublished() == 0


def test_a_rejected_entry_is_logged_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    events = FakeEvents({"FailedEntryCount": 1, "Entries": [
        {"ErrorCode": "InternalFailure", "ErrorMessage": "try again"}]})
    publish(events)
    assert unpublished() == 1
    [record] = [r for r in caplog.records if "rejected by EventBridge" in r.getMessage()]
    assert record.levelname == "ERROR" and record.__dict__["task_id"] == TASK.task_id
    assert record.__dict__["errors"] == [("InternalFailure", "try again")]


def test_a_failed_call_is_logged_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    error = ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}},
                        "PutEvents")
    publish(FakeEvents(error=error))
    assert unpublished() == 1
    assert any("not published" in r.getMessage() and r.levelname == "ERROR"
               for r in caplog.records)
