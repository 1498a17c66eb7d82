"""The reconciler settles what a stopped execution or a dead Lambda left unfinished."""

from __future__ import annotations

import json
from datetime import timedelta

from boto3.dynamodb.conditions import Key
from pixelbatch.clock import iso, now
from pixelbatch.container import build_container
from pixelbatch.models import ItemRef
from pixelbatch.repos.tasks import task_pk

from tests.integration.conftest import Stack
from tests.integration.test_processing import create, details, photo_urls, process
from tests.support.http_events import REPO


def test_stuck_items_are_failed_refunded_and_finalized(stack: Stack) -> None:
    # Given a batch of 3: one done, one claimed by a worker that died, one never started
    user = stack.user("olga", quota=10)
    task_id = create(stack, user, photo_urls(stack, user, 3))
    stack.invoke("StartBatchFunction", {"task_id": task_id, "round": 1})
    process(stack, task_id, 0, 1)
    container = build_container()
    assert container.task_store.claim_item(task_id, ItemRef(1, 1))
    # When the reconciler runs now, nothing is stale yet
    assert container.processing.reconcile(now()).settled_items == 0
    # And when it runs past the deadline, the two unfinished items are settled once
    later = now() + timedelta(hours=1)
    report = container.processing.reconcile(later)
    assert (report.settled_items, report.finalized_tasks) == (2, 1)
    assert container.processing.reconcile(later).settled_items == 0
    task = details(stack, user, task_id)
    assert task["status"] == "partial_success"
    assert [i["error_code"] for i in task["batch_items"]] == [None, "interrupted", "interrupted"]
    assert stack.balance(user) == 9
    # And the late worker of item 1 loses its condition
    assert process(stack, task_id, 1, 1)["status"] == "failed"
    assert details(stack, user, task_id)["batch_success"] == 1


def test_the_scheduled_reconciler_settles_stuck_items_with_its_own_role(stack: Stack) -> None:
    # Given a batch of 2 whose second item was claimed by a worker that died an hour ago
    user = stack.user("oskar", quota=10)
    task_id = create(stack, user, photo_urls(stack, user, 2))
    stack.invoke("StartBatchFunction", {"task_id": task_id, "round": 1})
    process(stack, task_id, 0, 1)
    assert build_container().task_store.claim_item(task_id, ItemRef(1, 1))
    _backdate(stack, task_id, timedelta(hours=1))
    # When EventBridge's schedule invokes the reconciler (as its role, under IAM)
    event = json.loads((REPO / "events" / "reconciler_scheduled.json").read_text())
    report = stack.invoke("ReconcilerFunction", event)
    # Then the stuck item is failed and refunded once, and the batch is finalized with its ZIP
    assert report == {"settled_items": 1, "finalized_tasks": 1}
    task = details(stack, user, task_id)
    assert task["status"] == "partial_success"
    assert stack.balance(user) == 9
    assert stack.call("GET", f"/api/tasks/{task_id}/download-zip", user=user).status == 302


def _backdate(stack: Stack, task_id: str, age: timedelta) -> None:
    """Every row of the task last changed ``age`` ago, as if time had passed."""
    table = stack.dynamodb.Table(stack.env["TASKS_TABLE"])
    rows = table.query(KeyConditionExpression=Key("pk").eq(task_pk(task_id)))["Items"]
    then = iso(now() - age)
    for row in rows:
        table.update_item(Key={"pk": row["pk"], "sk": row["sk"]},
                          UpdateExpression="SET updated_at = :then",
                          ExpressionAttributeValues={":then": then})
