"""The reconciler settles what a stopped execution or a dead Lambda left unfinished."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Final

from boto3.dynamodb.conditions import Key
from pixelbatch.clock import iso, now
from pixelbatch.container import build_container
from pixelbatch.models import ItemRef
from pixelbatch.repos.tasks import OPEN_SHARDS, task_pk
from pixelbatch.services.tasks import new_task

from tests.integration.conftest import Stack
from tests.integration.test_processing import create, details, photo_urls, process
from tests.support.http_events import REPO

TASKS_ACROSS_SHARDS: Final = 48


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
    task_id = stuck_batch(stack, user)
    # When EventBridge's schedule invokes the reconciler (as its role, under IAM)
    event = json.loads((REPO / "events" / "reconciler_scheduled.json").read_text())
    report = stack.invoke("ReconcilerFunction", event)
    # Then the stuck item is failed and refunded once, and the batch is finalized with its ZIP
    assert report == {"settled_items": 1, "finalized_tasks": 1}
    task = details(stack, user, task_id)
    assert task["status"] == "partial_success"
    assert stack.balance(user) == 9
    assert stack.call("GET", f"/api/tasks/{task_id}/download-zip", user=user).status == 302


def stuck_batch(stack: Stack, user: str) -> str:
    """A 2-image batch: the first image done, the second claimed by a worker that died an
    hour ago."""
    task_id = create(stack, user, photo_urls(stack, user, 2))
    stack.invoke("StartBatchFunction", {"task_id": task_id, "round": 1})
    process(stack, task_id, 0, 1)
    assert build_container().task_store.claim_item(task_id, ItemRef(1, 1))
    _backdate(stack, task_id, timedelta(hours=1))
    return task_id


def _backdate(stack: Stack, task_id: str, age: timedelta) -> None:
    """Every row of the task last changed ``age`` ago, as if time had passed."""
    table = stack.dynamodb.Table(stack.env["TASKS_TABLE"])
    rows = table.query(KeyConditionExpression=Key("pk").eq(task_pk(task_id)))["Items"]
    then = iso(now() - age)
    for row in rows:
        table.update_item(Key={"pk": row["pk"], "sk": row["sk"]},
                          UpdateExpression="SET updated_at = :then",
                          ExpressionAttributeValues={":then": then})


def test_the_reconciler_finds_every_open_task_across_the_index_shards(stack: Stack) -> None:
    # Given many open tasks whose items never started (their executions never ran)
    user = stack.user("many", quota=TASKS_ACROSS_SHARDS)
    container = build_container()
    task_ids = []
    for n in range(TASKS_ACROSS_SHARDS):
        task, items = new_task(user, "basic_clean", 1, [f"s3://in/{n}.jpg"], {}, [],
                               is_batch=True)
        container.task_store.create_charged(task, items)
        task_ids.append(task.task_id)
    # They are spread over the by_open shards, not piled on one partition
    table = stack.dynamodb.Table(stack.env["TASKS_TABLE"])
    shards = {table.get_item(Key={"pk": f"task#{t}", "sk": "task"})["Item"]["open_shard"]
              for t in task_ids}
    assert len(shards) > OPEN_SHARDS // 2 and shards <= {f"open#{n}" for n in range(OPEN_SHARDS)}
    # When the reconciler looks past the deadline, it finds every one of them
    later = now() + timedelta(hours=1)
    assert sorted(container.task_store.stale_open_task_ids(iso(later))) == sorted(task_ids)
    report = container.processing.reconcile(later)
    assert (report.settled_items, report.finalized_tasks) == (len(task_ids), len(task_ids))
    # And everything was refunded, and nothing is left open
    assert stack.balance(user) == TASKS_ACROSS_SHARDS
    assert container.task_store.stale_open_task_ids(iso(later)) == []


def test_task_rows_expire_with_their_outputs(stack: Stack) -> None:
    user = stack.user("ttl", quota=5)
    task_id = create(stack, user, photo_urls(stack, user, 2))
    table = stack.dynamodb.Table(stack.env["TASKS_TABLE"])
    rows = table.query(KeyConditionExpression="pk = :pk",
                       ExpressionAttributeValues={":pk": f"task#{task_id}"})["Items"]
    retention = int(stack.env["TASK_RETENTION_DAYS"]) * 86400
    expected = now().timestamp() + retention
    assert len(rows) == 3
    assert all(abs(int(row["expires_at"]) - expected) < 120 for row in rows)
    assert all("expires_at" not in row for row in stack.ledger(user))


def test_a_task_past_its_expiry_reads_as_gone_before_dynamodb_deletes_it(stack: Stack) -> None:
    user = stack.user("expired", quota=5)
    kept = create(stack, user, photo_urls(stack, user, 1))
    gone = create(stack, user, photo_urls(stack, user, 1))
    # Given TTL's moment has passed for one task (DynamoDB deletes such rows days later)
    table = stack.dynamodb.Table(stack.env["TASKS_TABLE"])
    for sk in ("task", "item#0000"):
        table.update_item(Key={"pk": f"task#{gone}", "sk": sk},
                          UpdateExpression="SET expires_at = :past",
                          ExpressionAttributeValues={":past": int(now().timestamp()) - 1})
    # Then it is not found, offers no URL, and is not listed; the other task is untouched
    assert stack.call("GET", f"/api/tasks/{gone}", user=user).status == 404
    assert stack.call("GET", f"/api/tasks/{gone}/download-zip", user=user).status == 404
    listed = stack.call("GET", "/api/tasks", user=user).body["data"]["tasks"]
    assert [task["id"] for task in listed] == [kept]
    assert details(stack, user, kept)["id"] == kept
