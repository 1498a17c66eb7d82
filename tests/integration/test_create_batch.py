"""POST /api/tasks/batch and POST /api/tasks through the real handler, on the real tables:
every validation branch of the contract, and the money that goes with each."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest

from tests.integration.conftest import Reply, Stack

BUCKET_PREFIX = "s3://pixelbatch-local-uploadsbucket/uploads"


def images(user: str, count: int) -> list[str]:
    return [f"{BUCKET_PREFIX}/{user}/up{i}/photo.jpg" for i in range(count)]


def batch(stack: Stack, user: str, **body: Any) -> Reply:
    payload = {"feature_id": "basic_clean", "input_images": images(user, 2), **body}
    return stack.call("POST", "/api/tasks/batch", user=user, body=payload)


def assert_error(reply: Reply, status: int, code: int, message: str | None = None) -> None:
    assert reply.status == status, reply.body
    assert reply.body["success"] is False
    assert reply.body["errorCode"] == code
    if message is not None:
        assert reply.body["message"] == message


def assert_untouched(stack: Stack, user: str, balance: int) -> None:
    """No charge without a task: the balance is intact and only the grant is in the ledger."""
    assert stack.balance(user) == balance
    assert [row["kind"] for row in stack.ledger(user)] == ["grant"]
    assert stack.executions() == []


def test_batch_is_charged_written_and_started(stack: Stack) -> None:
    # Given a pro user with 100 quota
    user = stack.user("alice", quota=100)
    # When she submits 3 images with brightness/contrast
    reply = batch(stack, user, input_images=images(user, 3),
                  input_data={"brightness": 10, "contrast": 5})
    # Then she is charged 3, the task is pending with 3 items, and its execution is started
    assert reply.status == 200, reply.body
    data = reply.body["data"]
    assert data["batch_total"] == 3 and data["quota_cost"] == 3
    assert stack.balance(user) == 97
    charges = [row for row in stack.ledger(user) if row["kind"] == "charge"]
    assert [int(row["amount"]) for row in charges] == [3]
    task = stack.call("GET", f"/api/tasks/{data['task_id']}", user=user).body["data"]
    assert task["status"] == "pending" and task["is_batch"] is True
    assert [item["status"] for item in task["batch_items"]] == ["pending"] * 3
    assert task["input_data"] == {"brightness": 10, "contrast": 5}
    assert [e["name"] for e in stack.executions()] == [f"{data['task_id']}-r1"]


def test_single_image_task_keeps_working(stack: Stack) -> None:
    user = stack.user("sam", quota=10, plan="free")
    reply = stack.call("POST", "/api/tasks", user=user, body={
        "feature_id": "basic_clean", "input_image": images(user, 1)[0]})
    assert reply.status == 200, reply.body
    task = stack.call("GET", f"/api/tasks/{reply.body['data']['task_id']}", user=user).body
    assert task["data"]["is_batch"] is False and task["data"]["batch_total"] == 1
    assert stack.balance(user) == 9


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"input_images": "s3://x"}, "input_images必须是数组"),
        ({"input_images": None}, "input_images必须是数组"),
        ({"input_images": []}, "至少需要上传1张图片"),
        ({"input_images": [f"{BUCKET_PREFIX}/mallory/{i}.jpg" for i in range(51)]},
         "批量处理最多支持50张图片"),
        ({"batch_items": [{"index": 0, "status": "success"}]}, None),
        ({"status": "success"}, None),
        ({"batch_success": 2}, None),
        ({"input_data": {"brightness": 500}}, None),
        ({"input_data": {"unknown": 1}}, None),
        ({"input_data": [1, 2]}, "input_data必须是对象"),
        ({"feature_id": ""}, "feature_id不能为空"),
        ({"input_images": ["s3://pixelbatch-local-uploadsbucket/uploads/bob/1/a.jpg"]}, None),
        ({"input_images": ["file:///etc/passwd"]}, None),
        ({"input_images": ["https://evil.example.net/a.jpg"]}, None),
        ({"input_images": [123]}, None),
    ],
)
def test_client_mistakes_are_400_and_cost_nothing(
    stack: Stack, body: dict[str, Any], message: str | None
) -> None:
    user = stack.user("mallory", quota=100)
    reply = batch(stack, user, **body)
    assert_error(reply, 400, 4001, message)
    assert_untouched(stack, user, 100)


@pytest.mark.parametrize("raw", ["{not json", "[]", "null", '"text"'])
def test_unparseable_bodies_are_400(stack: Stack, raw: str) -> None:
    user = stack.user("mallory", quota=100)
    assert_error(stack.call("POST", "/api/tasks/batch", user=user, body=raw), 400, 4001)
    assert_untouched(stack, user, 100)


@pytest.mark.parametrize(
    ("feature_id", "plan", "status", "code", "message"),
    [
        ("no_such_feature", "pro", 404, 4004, "功能不存在"),
        ("sepia_legacy", "pro", 404, 4004, "功能不存在"),
        ("hdr_tone", "pro", 403, 4003, "功能已禁用"),
        ("watermark", "free", 403, 4003, "无权使用该功能"),
    ],
)
def test_feature_checks(
    stack: Stack, feature_id: str, plan: str, status: int, code: int, message: str
) -> None:
    user = stack.user("carol", quota=100, plan=plan)
    assert_error(batch(stack, user, feature_id=feature_id), status, code, message)
    assert_untouched(stack, user, 100)


def test_quota_insufficient_charges_nothing(stack: Stack) -> None:
    user = stack.user("dave", quota=5)
    reply = batch(stack, user, input_images=images(user, 6))
    assert_error(reply, 403, 1003, "配额不足，请充值")
    assert_untouched(stack, user, 5)


def test_unknown_account_has_no_quota(stack: Stack) -> None:
    assert_error(batch(stack, "ghost"), 403, 1003, "配额不足，请充值")


def wait_for_window_with(seconds: float, window: int = 60) -> None:
    """The limiter counts in fixed windows; start where the whole burst fits in one."""
    left = window - time.time() % window
    if left < seconds:
        time.sleep(left + 0.1)


def test_rate_limit_is_429_with_retry_after(stack: Stack) -> None:
    # product_shot allows 5 requests a minute
    user = stack.user("erin", quota=1000, plan="enterprise")
    wait_for_window_with(seconds=20)
    replies = [batch(stack, user, feature_id="product_shot") for _ in range(6)]
    assert [r.status for r in replies] == [200] * 5 + [429]
    limited = replies[-1]
    assert_error(limited, 429, 4029, "请求过于频繁，请稍后再试")
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert limited.body["rateLimitInfo"]["remaining"] == 0
    assert stack.balance(user) == 1000 - 5 * 2 * 5


def test_failed_start_undoes_the_charge(stack: Stack) -> None:
    # Given the state machine is gone, so the execution cannot start
    user = stack.user("frank", quota=50)
    stack.sfn.delete_state_machine(stateMachineArn=stack.template.state_machines[0].arn)
    # When a batch is created
    reply = batch(stack, user, input_images=images(user, 4))
    # Then the client is told, and the charge is undone through the ledger
    assert_error(reply, 503, 5000)
    assert stack.balance(user) == 50
    kinds = Counter(row["kind"] for row in stack.ledger(user))
    assert kinds == {"grant": 1, "charge": 1, "refund": 4}
    tasks = stack.call("GET", "/api/tasks", user=user).body["data"]["tasks"]
    assert [t["status"] for t in tasks] == ["failed"]


def test_concurrent_batches_never_overdraw(stack: Stack) -> None:
    # Given 95 quota and 10 simultaneous batches of 10 images
    user = stack.user("grace", quota=95)
    replies: list[Reply] = []
    lock = threading.Lock()
    start = threading.Barrier(10)

    def submit() -> None:
        start.wait()
        reply = batch(stack, user, input_images=images(user, 10))
        with lock:
            replies.append(reply)

    threads = [threading.Thread(target=submit) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then exactly 9 tasks exist, exactly one 403/1003, and the ledger adds up
    statuses = Counter((r.status, r.body.get("errorCode")) for r in replies)
    assert statuses == {(200, None): 9, (403, 1003): 1}
    assert stack.balance(user) == 5
    ledger = stack.ledger(user)
    charged = sum(int(r["amount"]) for r in ledger if r["kind"] == "charge")
    assert charged == 90 and 95 - stack.balance(user) == charged
    assert len(stack.call("GET", "/api/tasks", user=user, query={"limit": "50"})
               .body["data"]["tasks"]) == 9
