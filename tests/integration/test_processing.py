"""The batch steps (start, item worker, record-failure, finalize) through their real handlers,
driven by the execution input the API really started, on real photos."""

from __future__ import annotations

import io
import json
import threading
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import pytest
from PIL import Image, ImageStat

from tests.integration.conftest import Reply, Stack
from tests.support.http_events import REPO

PHOTOS = sorted((REPO / "tests/fixtures/corpus/photos").glob("*.jpg")) + sorted(
    (REPO / "tests/fixtures/corpus/photos").glob("*.png")
)
JUNK = b"%PDF-1.4 this is not an image at all\n" * 20


def upload(stack: Stack, user: str, name: str, data: bytes) -> str:
    bucket = stack.env["UPLOADS_BUCKET"]
    key = f"uploads/{user}/{name}"
    stack.s3.put_object(Bucket=bucket, Key=key, Body=data)
    return f"s3://{bucket}/{key}"


def photo_urls(stack: Stack, user: str, count: int) -> list[str]:
    return [upload(stack, user, f"p{i}/{PHOTOS[i % len(PHOTOS)].name}",
                   PHOTOS[i % len(PHOTOS)].read_bytes()) for i in range(count)]


def create(stack: Stack, user: str, urls: list[str], **input_data: Any) -> str:
    reply = stack.call("POST", "/api/tasks/batch", user=user, body={
        "feature_id": "basic_clean", "input_images": urls, "input_data": input_data})
    assert reply.status == 200, reply.body
    task_id: str = reply.body["data"]["task_id"]
    return task_id


def execution_input(stack: Stack, task_id: str, round_no: int, *, name: str | None = None
                    ) -> dict[str, Any]:
    name = name or f"{task_id}-r{round_no}"
    [execution] = [e for e in stack.executions() if e["name"] == name]
    described = stack.sfn.describe_execution(executionArn=execution["executionArn"])
    payload: dict[str, Any] = json.loads(described["input"])
    return payload


def run_round(stack: Stack, task_id: str, round_no: int = 1, *, name: str | None = None
              ) -> list[dict[str, Any]]:
    """What the state machine does for one execution (a round by default), step by step."""
    payload = execution_input(stack, task_id, round_no, name=name)
    stack.invoke("StartBatchFunction", {"task_id": task_id, "round": payload["round"]})
    results = [process(stack, task_id, item["index"], item["attempt"]) for item in payload["items"]]
    stack.invoke("FinalizeFunction", {"task_id": task_id, "round": payload["round"]})
    return results


def process(stack: Stack, task_id: str, index: int, attempt: int) -> dict[str, Any]:
    return stack.invoke("ProcessItemFunction", {
        "action": "process", "task_id": task_id, "index": index, "attempt": attempt})


def details(stack: Stack, user: str, task_id: str) -> dict[str, Any]:
    reply = stack.call("GET", f"/api/tasks/{task_id}", user=user)
    assert reply.status == 200, reply.body
    data: dict[str, Any] = reply.body["data"]
    return data


def zip_of(stack: Stack, user: str, task_id: str) -> zipfile.ZipFile:
    reply = stack.call("GET", f"/api/tasks/{task_id}/download-zip", user=user)
    assert reply.status == 302, reply.body
    location = reply.headers["Location"]
    disposition = parse_qs(urlparse(location).query)["response-content-disposition"][0]
    assert disposition == f'attachment; filename="batch_{task_id}.zip"'
    bucket = stack.env["OUTPUTS_BUCKET"]
    url = urlparse(location)
    key = url.path.lstrip("/")
    if not url.netloc.startswith(bucket):  # path-style URL: /bucket/key
        key = key.split("/", 1)[1]
    body = stack.s3.get_object(Bucket=bucket, Key=unquote(key))["Body"].read()
    return zipfile.ZipFile(io.BytesIO(body))


def ledger_net(stack: Stack, user: str) -> int:
    sign = {"charge": 1, "refund": -1, "grant": 0}
    return sum(sign[row["kind"]] * int(row["amount"]) for row in stack.ledger(user))


def mean_luma(data: bytes) -> float:
    return float(ImageStat.Stat(Image.open(io.BytesIO(data)).convert("L")).mean[0])


def test_partial_batch_refunds_failures_and_zips_the_rest(stack: Stack) -> None:
    # Given 4 real photos and 2 files that are not images, brightened by 40
    user = stack.user("alice", quota=100)
    urls = photo_urls(stack, user, 4) + [upload(stack, user, f"junk{i}.jpg", JUNK) for i in (0, 1)]
    task_id = create(stack, user, urls, brightness=40)
    # When the round runs
    run_round(stack, task_id)
    # Then 4 succeed, 2 fail with a readable error and are refunded once
    task = details(stack, user, task_id)
    counts = (task["status"], task["batch_success"], task["batch_failed"])
    assert counts == ("partial_success", 4, 2)
    failed = [item for item in task["batch_items"] if item["status"] == "failed"]
    assert {item["error_message"] for item in failed} == {"图片格式不支持"}
    assert all(item["output_url"] is None for item in failed)
    assert stack.balance(user) == 96 and ledger_net(stack, user) == 4
    # And the ZIP holds exactly the 4 results, stored, brighter than their inputs
    archive = zip_of(stack, user, task_id)
    names = sorted(n for n in archive.namelist() if n != "manifest.json")
    assert names == ["result_1.jpg", "result_2.jpg", "result_3.jpg", "result_4.jpg"]
    assert all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())
    for index in range(4):
        source = PHOTOS[index % len(PHOTOS)].read_bytes()
        assert mean_luma(archive.read(f"result_{index + 1}.jpg")) > mean_luma(source) + 5
    manifest = json.loads(archive.read("manifest.json"))
    assert [entry["status"] for entry in manifest["items"]] == ["success"] * 4 + ["failed"] * 2


def test_duplicate_and_late_invocations_change_nothing(stack: Stack) -> None:
    user = stack.user("bob", quota=10)
    task_id = create(stack, user, photo_urls(stack, user, 2))
    run_round(stack, task_id)
    before = details(stack, user, task_id)
    # Lambda is at-least-once: the same item again, a late Catch, a second finalize
    assert process(stack, task_id, 0, 1)["status"] == "success"
    stack.invoke("ProcessItemFunction", {"action": "record_failure", "task_id": task_id,
                                         "index": 1, "attempt": 1, "error": "States.Timeout"})
    stack.invoke("FinalizeFunction", {"task_id": task_id, "round": 1})
    after = details(stack, user, task_id)
    assert (after["status"], after["batch_success"], after["batch_failed"]) == ("success", 2, 0)
    assert after["batch_items"] == before["batch_items"] or all(
        a["status"] == b["status"] for a, b in zip(after["batch_items"], before["batch_items"],
                                                   strict=True))
    assert stack.balance(user) == 8


def test_worker_death_is_recorded_and_refunded(stack: Stack) -> None:
    # Given an item whose Lambda timed out (the Catch sends record_failure)
    user = stack.user("carol", quota=10)
    task_id = create(stack, user, photo_urls(stack, user, 2))
    stack.invoke("StartBatchFunction", {"task_id": task_id, "round": 1})
    stack.invoke("ProcessItemFunction", {"action": "record_failure", "task_id": task_id,
                                         "index": 0, "attempt": 1, "error": "States.Timeout"})
    process(stack, task_id, 1, 1)
    stack.invoke("FinalizeFunction", {"task_id": task_id, "round": 1})
    task = details(stack, user, task_id)
    assert task["batch_items"][0]["error_code"] == "timeout"
    assert task["batch_items"][0]["retryable"] is True
    assert task["status"] == "partial_success" and stack.balance(user) == 9


def test_download_errors(stack: Stack) -> None:
    user = stack.user("dave", quota=10)
    task_id = create(stack, user, [upload(stack, user, "junk.jpg", JUNK)])
    run_round(stack, task_id)
    assert details(stack, user, task_id)["status"] == "failed"
    nothing = stack.call("GET", f"/api/tasks/{task_id}/download-zip", user=user)
    assert (nothing.status, nothing.body["message"]) == (400, "没有可下载的文件")
    other = stack.user("eve", quota=1)
    assert stack.call("GET", f"/api/tasks/{task_id}/download-zip", user=other).status == 403
    foreign = stack.call("GET", f"/api/tasks/{task_id}", user=other)
    assert foreign.body["message"] == "无权访问该任务"
    missing = stack.call("GET", "/api/tasks/nope/download-zip", user=user)
    assert (missing.status, missing.body["message"]) == (404, "任务不存在")
    single = stack.call("POST", "/api/tasks", user=user, body={
        "feature_id": "basic_clean", "input_image": photo_urls(stack, user, 1)[0]})
    not_batch = stack.call("GET", f"/api/tasks/{single.body['data']['task_id']}/download-zip",
                           user=user)
    assert (not_batch.status, not_batch.body["message"]) == (400, "该任务不是批量任务")


def test_retry_failed_charges_once_and_reprocesses_only_failures(stack: Stack) -> None:
    # Given a batch whose last two inputs were broken, then fixed in place
    user = stack.user("frank", quota=20)
    urls = photo_urls(stack, user, 2) + [upload(stack, user, f"fix{i}.jpg", JUNK) for i in (0, 1)]
    task_id = create(stack, user, urls)
    run_round(stack, task_id)
    assert stack.balance(user) == 18
    for i in (0, 1):
        upload(stack, user, f"fix{i}.jpg", PHOTOS[i].read_bytes())
    # When five clients retry at once
    replies: list[Reply] = []
    gate = threading.Barrier(5)

    def retry() -> None:
        gate.wait()
        replies.append(stack.call("POST", f"/api/tasks/{task_id}/retry-failed", user=user))

    threads = [threading.Thread(target=retry) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then exactly one charges, for exactly the failed items
    ok = [r for r in replies if r.status == 200]
    assert len(ok) == 1, [r.body for r in replies]
    assert ok[0].body == {"success": True, "message": "已重新提交2个失败项", "quota_cost": 2}
    assert all(r.body["message"] == "没有失败的子任务需要重试" for r in replies if r.status != 200)
    assert stack.balance(user) == 16
    assert execution_input(stack, task_id, 2)["items"] == [
        {"index": 2, "attempt": 2}, {"index": 3, "attempt": 2}]
    # And the second round finishes the batch
    run_round(stack, task_id, 2)
    task = details(stack, user, task_id)
    assert (task["status"], task["batch_success"], task["batch_failed"]) == ("success", 4, 0)
    assert len([n for n in zip_of(stack, user, task_id).namelist() if n != "manifest.json"]) == 4
    assert stack.balance(user) == 16 and ledger_net(stack, user) == 4


def test_cancel_refunds_unfinished_items_once(stack: Stack) -> None:
    # Given a 5-image batch with two items done
    user = stack.user("grace", quota=10)
    task_id = create(stack, user, photo_urls(stack, user, 5))
    stack.invoke("StartBatchFunction", {"task_id": task_id, "round": 1})
    process(stack, task_id, 0, 1)
    process(stack, task_id, 1, 1)
    # When the user cancels (twice)
    first = stack.call("POST", f"/api/tasks/{task_id}/cancel", user=user)
    second = stack.call("POST", f"/api/tasks/{task_id}/cancel", user=user)
    # Then the three unfinished items are refunded exactly once
    assert first.body == {"success": True, "message": "任务已取消，返还3配额", "refund_amount": 3}
    assert (second.status, second.body["errorCode"]) == (409, 4009)
    # And a late finisher loses its condition and is not counted
    assert process(stack, task_id, 2, 1)["status"] == "cancelled"
    stack.invoke("FinalizeFunction", {"task_id": task_id, "round": 1})
    task = details(stack, user, task_id)
    assert task["status"] == "cancelled"
    assert [i["status"] for i in task["batch_items"]] == ["success"] * 2 + ["cancelled"] * 3
    refunds = sum(int(r["amount"]) for r in stack.ledger(user) if r["kind"] == "refund")
    assert refunds == 3 and stack.balance(user) == 8 and ledger_net(stack, user) == 2


def test_a_cancelled_batch_with_successes_gets_its_zip_and_manifest(stack: Stack) -> None:
    # Given a 4-image batch with images 0 and 2 done, 1 and 3 not yet run
    user = stack.user("olivia", quota=10)
    task_id = create(stack, user, photo_urls(stack, user, 4), brightness=20)
    stack.invoke("StartBatchFunction", {"task_id": task_id, "round": 1})
    process(stack, task_id, 0, 1)
    process(stack, task_id, 2, 1)
    # When the user cancels (its round is stopped, so that round's Finalize never runs)
    reply = stack.call("POST", f"/api/tasks/{task_id}/cancel", user=user)
    assert reply.body["refund_amount"] == 2
    assert stack.call("GET", f"/api/tasks/{task_id}/download-zip", user=user).status == 400
    # Then the cancel started one closing execution with no items, which only finalizes
    closing = execution_input(stack, task_id, 1, name=f"{task_id}-close")
    assert closing == {"task_id": task_id, "round": 1, "items": []}
    assert run_round(stack, task_id, name=f"{task_id}-close") == []
    # And the ZIP holds the two results and a manifest of all four images
    task = details(stack, user, task_id)
    assert (task["status"], task["batch_success"], task["batch_cancelled"]) == ("cancelled", 2, 2)
    archive = zip_of(stack, user, task_id)
    assert sorted(archive.namelist()) == ["manifest.json", "result_1.jpg", "result_3.jpg"]
    for index in (0, 2):
        output = details(stack, user, task_id)["batch_items"][index]["output_url"]
        assert output and archive.read(f"result_{index + 1}.jpg") == object_at(stack, output)
    entries = json.loads(archive.read("manifest.json"))["items"]
    assert [(e["status"], e["file"]) for e in entries] == [
        ("success", "result_1.jpg"), ("cancelled", None), ("success", "result_3.jpg"),
        ("cancelled", None)]
    # And the money is what two successes cost, the cancel refunded once
    assert stack.balance(user) == 8 and ledger_net(stack, user) == 2


def test_a_cancelled_batch_without_successes_has_nothing_to_download(stack: Stack) -> None:
    # Given a 2-image batch cancelled before anything ran, and its closing execution run
    user = stack.user("oscar", quota=10)
    task_id = create(stack, user, photo_urls(stack, user, 2))
    assert stack.call("POST", f"/api/tasks/{task_id}/cancel", user=user).status == 200
    run_round(stack, task_id, name=f"{task_id}-close")
    # Then there is no ZIP to offer, and everything was refunded
    reply = stack.call("GET", f"/api/tasks/{task_id}/download-zip", user=user)
    assert (reply.status, reply.body["message"]) == (400, "没有可下载的文件")
    assert details(stack, user, task_id)["status"] == "cancelled"
    assert stack.balance(user) == 10 and ledger_net(stack, user) == 0


def object_at(stack: Stack, url: str) -> bytes:
    """The object a presigned GET URL names (virtual-host or path style)."""
    parsed = urlparse(url)
    bucket, key = parsed.netloc.split(".", 1)[0], unquote(parsed.path.lstrip("/"))
    if bucket not in (stack.env["OUTPUTS_BUCKET"], stack.env["UPLOADS_BUCKET"]):
        bucket, key = key.split("/", 1)
    data: bytes = stack.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return data


def test_cancel_finished_task_is_409(stack: Stack) -> None:
    user = stack.user("heidi", quota=10)
    task_id = create(stack, user, photo_urls(stack, user, 1))
    run_round(stack, task_id)
    reply = stack.call("POST", f"/api/tasks/{task_id}/cancel", user=user)
    assert (reply.status, reply.body["errorCode"]) == (409, 4009)
    assert stack.balance(user) == 9


@pytest.mark.parametrize("route", ["/api/tasks/batch"])
def test_idempotency_key_replays_first_reply(stack: Stack, route: str) -> None:
    user = stack.user("ivan", quota=10)
    urls = photo_urls(stack, user, 2)
    body = {"feature_id": "basic_clean", "input_images": urls}
    headers = {"Idempotency-Key": "create-0001-abcdef"}
    first = stack.call("POST", route, user=user, body=body, headers=headers)
    again = stack.call("POST", route, user=user, body=json.dumps(body, indent=1), headers=headers)
    assert first.status == again.status == 200
    assert first.body == again.body
    assert stack.balance(user) == 8
    changed = stack.call("POST", route, user=user, body={**body, "input_images": urls[:1]},
                         headers=headers)
    assert (changed.status, changed.body["errorCode"]) == (400, 4001)
    assert stack.balance(user) == 8


def test_photos_fixture_is_present() -> None:
    assert len(PHOTOS) >= 10 and all(Path(p).stat().st_size > 0 for p in PHOTOS)


def test_finalize_announces_the_finished_batch_once(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a publisher that records what it really sends to EventBridge (moto)
    from pixelbatch.repos import events

    sent: list[dict[str, Any]] = []
    original = events.EventPublisher.batch_finished

    def record(self: events.EventPublisher, task: Any, status: Any, **counts: int) -> None:
        sent.append({"task_id": task.task_id, "status": status.value, **counts})
        original(self, task, status, **counts)

    monkeypatch.setattr(events.EventPublisher, "batch_finished", record)
    user = stack.user("judy", quota=10)
    urls = [*photo_urls(stack, user, 1), upload(stack, user, "junk.jpg", JUNK)]
    task_id = create(stack, user, urls)
    # When the round runs and finalize is delivered twice
    run_round(stack, task_id)
    stack.invoke("FinalizeFunction", {"task_id": task_id, "round": 1})
    # Then exactly one BatchFinished event went out, with the tally
    assert sent == [{"task_id": task_id, "status": "partial_success", "succeeded": 1,
                     "failed": 1}]


def test_finalize_settles_the_attempts_its_round_left_unfinished(stack: Stack) -> None:
    # Given a round whose Map ended with item 1 never processed (its iteration failed and
    # even RecordFailure could not run) and item 0 done
    user = stack.user("orphan", quota=10)
    task_id = create(stack, user, photo_urls(stack, user, 2), brightness=10)
    payload = execution_input(stack, task_id, 1)
    stack.invoke("StartBatchFunction", {"task_id": task_id, "round": 1})
    process(stack, task_id, 0, 1)
    # When Finalize runs with the round's items, as the state machine sends them
    result = stack.invoke("FinalizeFunction", {"task_id": task_id, "round": 1,
                                               "items": payload["items"]})
    # Then the abandoned attempt is failed, refunded once and retryable, and the batch is final
    assert result == {"status": "partial_success"}
    task = details(stack, user, task_id)
    assert [item["status"] for item in task["batch_items"]] == ["success", "failed"]
    assert stack.balance(user) == 9
    refunds = [row for row in stack.ledger(user) if row["kind"] == "refund"]
    assert len(refunds) == 1
    # A Finalize without the round's items (the reconciler's) leaves unfinished items alone
    other = create(stack, user, photo_urls(stack, user, 1))
    assert stack.invoke("FinalizeFunction", {"task_id": other, "round": 1}) == {
        "status": "waiting"}
