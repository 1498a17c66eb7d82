"""Webhooks end to end on the local stack: a receiver on this machine gets each finished task,
signed as the official Standard Webhooks library verifies, again after it answered an error
(the same webhook-id), and a cancelled batch as cancelled. Delivery goes through the SQS queue
and the delivery function, polled as Lambda's event source mapping polls."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from standardwebhooks import Webhook

from devstack.client import PixelBatchClient
from tests.e2e.conftest import LocalApi
from tests.support.http_events import REPO
from tests.support.receiver import Receiver, receiver

pytestmark = pytest.mark.e2e

PHOTOS = sorted((REPO / "tests/fixtures/corpus/photos").iterdir())
# The first retry comes 5 s after a failed attempt; allow for polling and the batch itself.
DELIVERY_TIMEOUT = 60


@pytest.fixture
def hooks() -> Iterator[Receiver]:
    with receiver() as found:
        yield found


def user_with_webhook(api: LocalApi, hooks: Receiver) -> tuple[PixelBatchClient, str]:
    _, token = api.make_user(quota=100)
    c = PixelBatchClient(api.base_url, token)
    created = c.ok("POST", "/api/webhooks", json={"url": hooks.url})["data"]
    assert created["secret"].startswith("whsec_")
    listed = c.ok("GET", "/api/webhooks")["data"]["webhooks"]
    assert [hook["webhook_id"] for hook in listed] == [created["webhook_id"]]
    return c, str(created["secret"])


def test_a_finished_batch_is_delivered_signed_and_retried_after_an_error(
    local_api: LocalApi, hooks: Receiver
) -> None:
    # Given a user whose receiver answers 500 to the first attempt, then 200
    c, secret = user_with_webhook(local_api, hooks)
    hooks.statuses = [500]
    # When their batch of three photos finishes
    task_id = c.create_batch("basic_clean", c.upload_paths(PHOTOS[:3]), brightness=10)
    task = c.wait(task_id)
    assert task["status"] == "success"
    # Then the event arrives twice: refused, then taken, with one webhook-id and one body
    first, second = hooks.wait_for(2, timeout=DELIVERY_TIMEOUT)[:2]
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == f"msg_{task_id}_r1"
    assert first.body == second.body
    assert int(second.headers["webhook-timestamp"]) >= int(first.headers["webhook-timestamp"])
    # And the official library verifies both attempts' signatures with the user's secret
    for attempt in (first, second):
        event = Webhook(secret).verify(attempt.body, attempt.headers)
        assert event["type"] == "task.finished"
        assert event["data"] == {"task_id": task_id, "status": "success", "batch_total": 3,
                                 "batch_success": 3, "batch_failed": 0, "refund_amount": 0}
    # And nothing more comes once it was taken
    assert len(hooks.wait_for(3, timeout=8)) == 2


def test_a_cancelled_batch_is_delivered_as_cancelled(
    local_api: LocalApi, hooks: Receiver
) -> None:
    # Given a user with a webhook and a batch of ten photos
    c, secret = user_with_webhook(local_api, hooks)
    task_id = c.create_batch("basic_clean", c.upload_paths(PHOTOS[:10]), brightness=10)
    # When they cancel it at once
    reply = c.ok("POST", f"/api/tasks/{task_id}/cancel")
    task = c.wait(task_id)
    assert task["status"] == "cancelled"
    # Then exactly one event says cancelled, with the counts and the refund of the task
    [got] = hooks.wait_for(1, timeout=DELIVERY_TIMEOUT)
    event = Webhook(secret).verify(got.body, got.headers)
    assert event["data"]["status"] == "cancelled" and event["data"]["task_id"] == task_id
    task = c.task(task_id)
    assert event["data"]["batch_success"] == task["batch_success"]
    assert event["data"]["refund_amount"] == 10 - task["batch_success"]
    assert reply["refund_amount"] <= event["data"]["refund_amount"]
    assert json.loads(got.body)["data"]["batch_total"] == 10
    assert len(hooks.wait_for(2, timeout=5)) == 1


def test_a_deleted_webhook_is_gone(local_api: LocalApi, hooks: Receiver) -> None:
    c, _ = user_with_webhook(local_api, hooks)
    [hook] = c.ok("GET", "/api/webhooks")["data"]["webhooks"]
    assert c.ok("DELETE", f"/api/webhooks/{hook['webhook_id']}")["data"]["deleted"] is True
    assert c.ok("GET", "/api/webhooks")["data"]["webhooks"] == []
    gone = c.request("DELETE", f"/api/webhooks/{hook['webhook_id']}")
    assert (gone.status_code, gone.json()["error"]) == (404, "webhook_not_found")
