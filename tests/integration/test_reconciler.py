"""The reconciler settles what a stopped execution or a dead Lambda left unfinished."""

from __future__ import annotations

from datetime import timedelta

from pixelbatch.clock import now
from pixelbatch.container import build_container
from pixelbatch.models import ItemRef

from tests.integration.conftest import Stack
from tests.integration.test_processing import create, details, photo_urls, process


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
