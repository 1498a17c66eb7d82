"""Faults injected into the real handlers on the real template (moto in process): a worker that
raises or times out mid-item, S3 and DynamoDB failing, a finalize that crashes, an execution that
does not start, and item events delivered twice or out of order.

Every test ends with the books intact (``initial - balance == charges - refunds`` and, per task,
``net charge == cost x successes``) and the task in a truthful state.

AWS faults are injected at ``BaseClient._make_api_call``, the layer where botocore emits
``before-call``: a matching call raises the ``ClientError`` botocore would raise once its own
retries were spent, and every other call (and every later one) reaches moto unchanged. That
covers the clients the handler environments built at their cold start, which a hook registered
on a new session or client would not reach.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError, ReadTimeoutError
from hypothesis import given, settings
from hypothesis import strategies as st
from pixelbatch.errors import ConcurrentUpdate
from pixelbatch.services import processing as processing_mod

from devstack.template import Template
from tests.integration.conftest import Stack
from tests.integration.test_hostile_inputs import (
    COST,
    HTML,
    Account,
    Expected,
    assert_books,
    assert_error,
    assert_outcomes,
    create_batch,
    drive_round,
    execution_payload,
    ledger_rows,
    moto_stack,
    new_account,
    photo_jpeg,
    put_upload,
)
from tests.integration.test_processing import details, process, run_round, zip_of
from tests.support.http_events import REPO

INTERNAL = ("internal_error", "处理失败，请重试")
LAMBDA_TIMEOUT = ("timeout", "处理超时")
NOT_AN_IMAGE = ("not_an_image", "图片格式不支持")
START_FAILED = "任务启动失败，配额已退还，请稍后重试"


@pytest.fixture(scope="module")
def stack(template: Template) -> Iterator[Stack]:
    with moto_stack(template) as built:
        yield built


# ---------------------------------------------------------------------- fault injection


def client_error(code: str, status: int = 400, **extra: Any) -> Callable[[str], Exception]:
    def make(operation: str) -> Exception:
        response: dict[str, Any] = {
            "Error": {"Code": code, "Message": f"injected {code}"},
            "ResponseMetadata": {"HTTPStatusCode": status}, **extra}
        return ClientError(response, operation)  # type: ignore[arg-type]

    return make


THROTTLED = client_error("ProvisionedThroughputExceededException")
THROTTLING = client_error("ThrottlingException")
CONFLICT = client_error("TransactionCanceledException", CancellationReasons=[
    {"Code": "None"}, {"Code": "TransactionConflict", "Message": "conflict"}])
IN_PROGRESS = client_error("TransactionInProgressException")


@dataclass
class Fault:
    service: str
    operation: str
    error: Callable[[str], Exception]
    times: int = 1_000_000
    when: Callable[[dict[str, Any]], bool] = lambda params: True
    lose_reply: bool = False  # make the real call, then raise: the request landed, the reply not
    seen: int = 0
    raised: int = 0


@dataclass
class Faults:
    active: list[Fault] = field(default_factory=list)

    def add(self, fault: Fault) -> Fault:
        self.active.append(fault)
        return fault

    def clear(self) -> None:
        self.active.clear()


@pytest.fixture
def faults(monkeypatch: pytest.MonkeyPatch) -> Faults:
    registry = Faults()
    real = BaseClient._make_api_call  # type: ignore[attr-defined]  # private in the stubs

    def call(self: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        service = self.meta.service_model.service_name
        for fault in list(registry.active):
            if (fault.service, fault.operation) != (service, operation) or not fault.when(params):
                continue
            fault.seen += 1
            if fault.raised < fault.times:
                fault.raised += 1
                if fault.lose_reply:
                    real(self, operation, params)
                raise fault.error(operation)
        return real(self, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", call)
    return registry


def transact_touching(prefix: str) -> Callable[[dict[str, Any]], bool]:
    """A TransactWriteItems that puts a ledger row whose id starts with ``prefix``."""
    def match(params: dict[str, Any]) -> bool:
        for action in params.get("TransactItems", []):
            entry = action.get("Put", {}).get("Item", {}).get("entry_id")
            if isinstance(entry, dict):
                entry = entry.get("S")
            if isinstance(entry, str) and entry.startswith(prefix):
                return True
        return False
    return match


def transact_setting(status: str) -> Callable[[dict[str, Any]], bool]:
    """A TransactWriteItems that moves an item to ``status``."""
    def match(params: dict[str, Any]) -> bool:
        return any(
            action.get("Update", {}).get("ExpressionAttributeValues", {}).get(f":{status}")
            in ({"S": status}, status)
            for action in params.get("TransactItems", []))
    return match


# ---------------------------------------------------------------------- helpers


def photos(stack: Stack, account: Account, count: int) -> list[str]:
    data = photo_jpeg()
    return [put_upload(stack, account.user, f"p{i}.jpg", data) for i in range(count)]


def item_event(task_id: str, index: int, attempt: int = 1, *, error: str | None = None
               ) -> dict[str, Any]:
    event: dict[str, Any] = {"action": "process", "task_id": task_id, "index": index,
                             "attempt": attempt}
    if error is not None:
        event.update(action="record_failure", error=error)
    return event


def record_failure(stack: Stack, task_id: str, index: int, error: str, attempt: int = 1
                   ) -> dict[str, Any]:
    return stack.invoke("ProcessItemFunction", item_event(task_id, index, attempt, error=error))


def start(stack: Stack, task_id: str, round_no: int = 1) -> None:
    stack.invoke("StartBatchFunction", {"task_id": task_id, "round": round_no})


def finalize(stack: Stack, task_id: str, round_no: int = 1) -> str:
    status: str = stack.invoke("FinalizeFunction", {"task_id": task_id, "round": round_no})[
        "status"]
    return status


def output_keys(stack: Stack, task_id: str) -> list[str]:
    listed = stack.s3.list_objects_v2(Bucket=stack.env["OUTPUTS_BUCKET"],
                                      Prefix=f"outputs/{task_id}/")
    return sorted(obj["Key"] for obj in listed.get("Contents", []))


def refunds_of(stack: Stack, account: Account, task_id: str) -> list[str]:
    return sorted(r["entry_id"] for r in ledger_rows(stack, account.user)
                  if r["kind"] == "refund" and r["task_id"] == task_id)


def charges_of(stack: Stack, account: Account, task_id: str) -> list[int]:
    return [int(r["amount"]) for r in ledger_rows(stack, account.user)
            if r["kind"] == "charge" and r["task_id"] == task_id]


def item_states(task: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(item["status"], item["error_code"]) for item in task["batch_items"]]


# ====================================================================== the Catch path


def test_the_asl_sends_any_item_error_by_name_to_record_failure() -> None:
    # The tests below play the state machine's part by hand (see drive_round): an item Lambda
    # that raises is followed by record_failure with the error's name. Hold the ASL to that.
    asl = json.loads((REPO / "statemachine/batch.asl.json").read_text())
    [item_map] = [s for s in asl["States"].values() if s["Type"] == "Map"]
    states = item_map["ItemProcessor"]["States"]
    worker = states[item_map["ItemProcessor"]["StartAt"]]
    [catch] = worker["Catch"]
    assert catch["ErrorEquals"] == ["States.ALL"] and catch["ResultPath"] == "$.error"
    recorder = states[catch["Next"]]
    payload = recorder["Parameters"]["Payload"]
    assert recorder["Parameters"]["FunctionName"] == worker["Parameters"]["FunctionName"]
    assert payload["action"] == "record_failure" and payload["error.$"] == "$.error.Error"
    assert {payload[k] for k in ("task_id.$", "index.$", "attempt.$")} == {
        "$.task_id", "$.index", "$.attempt"}
    assert all("States.ALL" not in r["ErrorEquals"] for r in worker.get("Retry", []))


def test_worker_raising_mid_item_is_failed_refunded_and_retryable(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a batch of 3 photos whose second image makes the pipeline raise
    account = new_account(stack, "crash")
    task_id = create_batch(stack, account.user, photos(stack, account, 3))
    real = processing_mod.run_pipeline
    calls: list[int] = []

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("decoder segfaulted")
        return real(*args, **kwargs)

    monkeypatch.setattr(processing_mod, "run_pipeline", flaky)
    start(stack, task_id)
    process(stack, task_id, 0, 1)
    # When the item Lambda raises mid-item
    with pytest.raises(RuntimeError):
        process(stack, task_id, 1, 1)
    # Then, until the Catch runs, the item is truthfully still processing and still charged
    assert item_states(details(stack, account.user, task_id))[1] == ("processing", None)
    assert stack.balance(account.user) == account.initial - 3 * COST
    # When the Catch records the failure by the error's name, and the round finishes
    assert record_failure(stack, task_id, 1, "RuntimeError")["status"] == "failed"
    process(stack, task_id, 2, 1)
    assert finalize(stack, task_id) == "partial_success"
    # Then the item is failed (retryable), refunded once, and left out of the ZIP
    task = details(stack, account.user, task_id)
    assert_outcomes(stack, account, task_id, task, {"a": None, "b": INTERNAL, "c": None})
    assert task["batch_items"][1]["retryable"] is True
    assert output_keys(stack, task_id) == [f"outputs/{task_id}/0000-a1.jpg",
                                           f"outputs/{task_id}/0002-a1.jpg"]
    # And a retry, with the pipeline healthy again, charges once and completes the batch
    monkeypatch.setattr(processing_mod, "run_pipeline", real)
    reply = stack.call("POST", f"/api/tasks/{task_id}/retry-failed", user=account.user)
    assert reply.body == {"success": True, "message": "已重新提交1个失败项", "quota_cost": COST}
    drive_round(stack, task_id, 2)
    task = details(stack, account.user, task_id)
    assert (task["status"], task["batch_success"], task["batch_failed"]) == ("success", 3, 0)
    assert_books(stack, account, balance=account.initial - 3 * COST, successes={task_id: 3})


@pytest.mark.parametrize("error", ["States.Timeout", "Sandbox.Timedout"])
def test_lambda_timeout_mid_item_is_refunded_and_the_late_worker_loses(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, error: str
) -> None:
    # Given a 2-photo batch whose first item's Lambda is declared timed out by the state
    # machine while it is still rendering (the Catch runs record_failure meanwhile)
    account = new_account(stack, "late")
    task_id = create_batch(stack, account.user, photos(stack, account, 2))
    start(stack, task_id)
    real = processing_mod.run_pipeline
    catch_replies: list[dict[str, Any]] = []

    def slow(*args: Any, **kwargs: Any) -> Any:
        if not catch_replies:
            catch_replies.append(record_failure(stack, task_id, 0, error))
        return real(*args, **kwargs)

    monkeypatch.setattr(processing_mod, "run_pipeline", slow)
    # When the late worker finishes its render afterwards
    late = process(stack, task_id, 0, 1)
    # Then the Catch won: the item is failed "timeout", refunded once; the late worker lost its
    # condition, counted nothing and removed the output it had written
    assert catch_replies == [{"status": "failed", "detail": "timeout"}]
    assert late == {"status": "failed", "detail": "late"}
    assert output_keys(stack, task_id) == []
    process(stack, task_id, 1, 1)
    assert finalize(stack, task_id) == "partial_success"
    task = details(stack, account.user, task_id)
    assert_outcomes(stack, account, task_id, task, {"timed_out": LAMBDA_TIMEOUT, "ok": None})
    assert task["batch_items"][0]["retryable"] is True
    assert refunds_of(stack, account, task_id) == [f"refund#{task_id}#0000#1"]


# ====================================================================== S3


def test_s3_failing_to_store_an_output_fails_that_item_and_refunds_it(
    stack: Stack, faults: Faults
) -> None:
    # Given S3 answering 500 to every PutObject of item 1's output
    account = new_account(stack, "s3")
    outputs = stack.env["OUTPUTS_BUCKET"]
    fault = faults.add(Fault("s3", "PutObject", client_error("InternalError", 500),
                             when=lambda p: p.get("Bucket") == outputs
                             and "/0001-a1." in p.get("Key", "")))
    task_id = create_batch(stack, account.user, photos(stack, account, 3))
    # When the round runs (the Lambda error goes through the Catch)
    drive_round(stack, task_id)
    # Then the item is failed and refunded, its output is not counted nor zipped
    assert fault.raised == 1
    task = details(stack, account.user, task_id)
    assert_outcomes(stack, account, task_id, task, {"a": None, "b": INTERNAL, "c": None})
    assert output_keys(stack, task_id) == [f"outputs/{task_id}/0000-a1.jpg",
                                           f"outputs/{task_id}/0002-a1.jpg"]


def test_s3_failing_to_read_an_input_is_a_retryable_fetch_failure(
    stack: Stack, faults: Faults
) -> None:
    # Given S3 answering 503 SlowDown when the worker reads the first input
    account = new_account(stack, "s3in")
    uploads = stack.env["UPLOADS_BUCKET"]
    faults.add(Fault("s3", "GetObject", client_error("SlowDown", 503),
                     when=lambda p: p.get("Bucket") == uploads and p["Key"].endswith("p0.jpg")))
    task_id = create_batch(stack, account.user, photos(stack, account, 2))
    # When the round runs
    drive_round(stack, task_id)
    # Then that item fails as a download failure worth retrying, and is refunded
    task = details(stack, account.user, task_id)
    assert_outcomes(stack, account, task_id, task,
                    {"a": ("fetch_failed", "下载图片失败"), "b": None})
    assert task["batch_items"][0]["retryable"] is True


# ====================================================================== DynamoDB


@pytest.mark.parametrize("error", [THROTTLED, THROTTLING, CONFLICT, IN_PROGRESS],
                         ids=["throughput", "throttling", "conflict", "in_progress"])
def test_contention_on_the_charge_is_retried_and_charges_once(
    stack: Stack, faults: Faults, error: Callable[[str], Exception]
) -> None:
    # Given the first 3 TransactWriteItems of a batch creation fail with contention
    account = new_account(stack, "busy")
    urls = photos(stack, account, 2)
    fault = faults.add(Fault("dynamodb", "TransactWriteItems", error, times=3,
                             when=transact_touching("charge#")))
    # When the batch is created
    task_id = create_batch(stack, account.user, urls)
    # Then it was retried until it went through, and charged exactly once
    assert (fault.raised, fault.seen) == (3, 4)
    assert charges_of(stack, account, task_id) == [2 * COST]
    assert_books(stack, account, balance=account.initial - 2 * COST)
    assert execution_payload(stack, task_id)["items"] == [
        {"index": 0, "attempt": 1}, {"index": 1, "attempt": 1}]
    # And the batch runs normally
    drive_round(stack, task_id)
    assert_outcomes(stack, account, task_id, details(stack, account.user, task_id),
                    {"a": None, "b": None})


def test_contention_beyond_the_retry_budget_is_409_with_no_charge(
    stack: Stack, faults: Faults
) -> None:
    # Given every TransactWriteItems that charges fails with throttling
    account = new_account(stack, "busy")
    urls = photos(stack, account, 2)
    fault = faults.add(Fault("dynamodb", "TransactWriteItems", THROTTLED,
                             when=transact_touching("charge#")))
    # When a batch is created
    reply = stack.call("POST", "/api/tasks/batch", user=account.user,
                       body={"feature_id": "basic_clean", "input_images": urls})
    # Then, after a bounded number of attempts, it is 409/4009 and nothing is charged
    assert_error(reply, 409, 4009, "请求冲突，请稍后重试")
    assert 2 <= fault.seen <= 10
    assert stack.balance(account.user) == account.initial
    assert [r["kind"] for r in ledger_rows(stack, account.user)] == ["grant"]
    assert stack.call("GET", "/api/tasks", user=account.user).body["data"]["tasks"] == []
    # And once DynamoDB recovers, the same request charges once
    faults.clear()
    task_id = create_batch(stack, account.user, urls)
    assert charges_of(stack, account, task_id) == [2 * COST]


def test_contention_when_an_item_succeeds_counts_it_once(stack: Stack, faults: Faults) -> None:
    # Given the first 2 success transactions (item -> success + counter) hit a conflict
    account = new_account(stack, "busy")
    task_id = create_batch(stack, account.user, photos(stack, account, 2))
    fault = faults.add(Fault("dynamodb", "TransactWriteItems", CONFLICT, times=2,
                             when=transact_setting("success")))
    # When the round runs
    drive_round(stack, task_id)
    # Then both items succeed, each counted once, and both charges are kept
    assert fault.raised == 2
    task = details(stack, account.user, task_id)
    assert_outcomes(stack, account, task_id, task, {"a": None, "b": None})


def test_contention_on_a_refund_is_retried_and_refunds_once(stack: Stack, faults: Faults
                                                            ) -> None:
    # Given a junk item whose fail-and-refund transaction is throttled 3 times
    account = new_account(stack, "busy")
    urls = [put_upload(stack, account.user, "junk.jpg", HTML), *photos(stack, account, 1)]
    task_id = create_batch(stack, account.user, urls)
    fault = faults.add(Fault("dynamodb", "TransactWriteItems", THROTTLING, times=3,
                             when=transact_touching("refund#")))
    # When the round runs
    drive_round(stack, task_id)
    # Then the refund went through once, after the retries
    assert fault.raised == 3
    task = details(stack, account.user, task_id)
    assert_outcomes(stack, account, task_id, task, {"junk": NOT_AN_IMAGE, "ok": None})
    assert refunds_of(stack, account, task_id) == [f"refund#{task_id}#0000#1"]


def test_refund_contention_beyond_budget_fails_the_lambda_and_the_catch_refunds_once(
    stack: Stack, faults: Faults
) -> None:
    # Given a junk item whose failure-and-refund transaction keeps hitting contention
    account = new_account(stack, "busy")
    urls = [put_upload(stack, account.user, "junk.jpg", HTML), *photos(stack, account, 1)]
    task_id = create_batch(stack, account.user, urls)
    start(stack, task_id)
    fault = faults.add(Fault("dynamodb", "TransactWriteItems", CONFLICT,
                             when=transact_touching("refund#")))
    # When the worker gives up, the Lambda fails with the product's error
    with pytest.raises(ConcurrentUpdate):
        process(stack, task_id, 0, 1)
    assert fault.seen >= 2
    # Then nothing was refunded yet and the item is still processing
    assert refunds_of(stack, account, task_id) == []
    assert item_states(details(stack, account.user, task_id))[0] == ("processing", None)
    # When DynamoDB recovers and the Catch records the failure (delivered twice)
    faults.clear()
    assert record_failure(stack, task_id, 0, "ConcurrentUpdate")["status"] == "failed"
    assert record_failure(stack, task_id, 0, "ConcurrentUpdate")["detail"] == "skipped"
    process(stack, task_id, 1, 1)
    finalize(stack, task_id)
    # Then the item is failed and refunded exactly once
    task = details(stack, account.user, task_id)
    assert_outcomes(stack, account, task_id, task, {"junk": INTERNAL, "ok": None})
    assert refunds_of(stack, account, task_id) == [f"refund#{task_id}#0000#1"]


def test_contention_on_retry_and_cancel_moves_money_once(stack: Stack, faults: Faults) -> None:
    # Given a finished batch with two failed items (inputs then fixed in place)
    account = new_account(stack, "busy")
    urls = [put_upload(stack, account.user, f"fix{i}.jpg", HTML) for i in (0, 1)]
    task_id = create_batch(stack, account.user, urls)
    drive_round(stack, task_id)
    for i in (0, 1):
        put_upload(stack, account.user, f"fix{i}.jpg", photo_jpeg())
    # When retry-failed meets 2 transaction conflicts
    retry_fault = faults.add(Fault("dynamodb", "TransactWriteItems", CONFLICT, times=2,
                                   when=transact_touching(f"charge#{task_id}#r2")))
    reply = stack.call("POST", f"/api/tasks/{task_id}/retry-failed", user=account.user)
    # Then it is charged exactly once
    assert reply.body == {"success": True, "message": "已重新提交2个失败项",
                          "quota_cost": 2 * COST}
    assert retry_fault.raised == 2
    assert charges_of(stack, account, task_id) == [2 * COST, 2 * COST]
    # When the user cancels the new round while its refund transaction is throttled twice
    cancel_fault = faults.add(Fault("dynamodb", "TransactWriteItems", THROTTLED, times=2,
                                    when=transact_touching("refund#")))
    reply = stack.call("POST", f"/api/tasks/{task_id}/cancel", user=account.user)
    # Then both attempts are refunded exactly once and the books close at zero
    assert reply.body == {"success": True, "message": f"任务已取消，返还{2 * COST}配额",
                          "refund_amount": 2 * COST}
    assert cancel_fault.raised == 2
    assert refunds_of(stack, account, task_id) == sorted(
        f"refund#{task_id}#{i:04d}#{a}" for i in (0, 1) for a in (1, 2))
    drive_round(stack, task_id, 2)  # the stopped execution's stragglers lose their condition
    task = details(stack, account.user, task_id)
    assert task["status"] == "cancelled"
    assert item_states(task) == [("cancelled", None), ("cancelled", None)]
    assert_books(stack, account, balance=account.initial, successes={task_id: 0})


# ====================================================================== finalize


def test_finalize_crashing_in_the_zip_writer_then_rerun_settles_once(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a finished round (2 photos, 1 junk) whose finalize crashes writing the ZIP
    account = new_account(stack, "fin")
    urls = [*photos(stack, account, 2), put_upload(stack, account.user, "junk.jpg", HTML)]
    task_id = create_batch(stack, account.user, urls)
    start(stack, task_id)
    for index in range(3):
        process(stack, task_id, index, 1)
    real = processing_mod.write_zip_to_s3

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk full")

    monkeypatch.setattr(processing_mod, "write_zip_to_s3", broken)
    with pytest.raises(RuntimeError):
        finalize(stack, task_id)
    # Then the task truthfully stays processing, with nothing to download yet
    task = details(stack, account.user, task_id)
    assert task["status"] == "processing"
    nothing = stack.call("GET", f"/api/tasks/{task_id}/download-zip", user=account.user)
    assert_error(nothing, 400, 4001, "没有可下载的文件")
    # When finalize is retried (the ASL retries it), twice
    monkeypatch.setattr(processing_mod, "write_zip_to_s3", real)
    assert finalize(stack, task_id) == "partial_success"
    assert finalize(stack, task_id) == "partial_success"
    # Then the status, the ZIP and the single refund are right
    task = details(stack, account.user, task_id)
    assert_outcomes(stack, account, task_id, task, {"a": None, "b": None, "junk": NOT_AN_IMAGE})
    assert refunds_of(stack, account, task_id) == [f"refund#{task_id}#0002#1"]


def test_finalize_crashing_mid_stream_leaves_no_partial_zip(stack: Stack, faults: Faults) -> None:
    # Given a round whose finalize fails reading the second output into the ZIP
    account = new_account(stack, "fin")
    task_id = create_batch(stack, account.user, photos(stack, account, 2))
    start(stack, task_id)
    for index in range(2):
        process(stack, task_id, index, 1)
    outputs = stack.env["OUTPUTS_BUCKET"]
    fault = faults.add(Fault("s3", "GetObject", client_error("InternalError", 500), times=1,
                             when=lambda p: p.get("Bucket") == outputs
                             and p["Key"] == f"outputs/{task_id}/0001-a1.jpg"))
    with pytest.raises(ClientError):
        finalize(stack, task_id)
    # Then the multipart upload was aborted: no ZIP object and no upload left open
    assert fault.raised == 1
    zips = stack.s3.list_objects_v2(Bucket=outputs, Prefix=f"zips/{task_id}/")
    assert zips.get("KeyCount", 0) == 0
    open_uploads = stack.s3.list_multipart_uploads(Bucket=outputs, Prefix=f"zips/{task_id}/")
    assert open_uploads.get("Uploads", []) == []
    assert details(stack, account.user, task_id)["status"] == "processing"
    # When finalize runs again, the ZIP is complete
    assert finalize(stack, task_id) == "success"
    assert_outcomes(stack, account, task_id, details(stack, account.user, task_id),
                    {"a": None, "b": None})


def test_finalize_crashing_after_the_zip_then_rerun(stack: Stack, faults: Faults) -> None:
    # Given a finalize whose final status write fails (DynamoDB 500) after the ZIP was written
    account = new_account(stack, "fin")
    urls = [*photos(stack, account, 1), put_upload(stack, account.user, "junk.jpg", HTML)]
    task_id = create_batch(stack, account.user, urls)
    start(stack, task_id)
    process(stack, task_id, 0, 1)
    process(stack, task_id, 1, 1)
    fault = faults.add(Fault("dynamodb", "UpdateItem", client_error("InternalServerError", 500),
                             times=1,
                             when=lambda p: ":zip" in p.get("ExpressionAttributeValues", {})))
    with pytest.raises(ClientError):
        finalize(stack, task_id)
    assert fault.raised == 1
    assert details(stack, account.user, task_id)["status"] == "processing"
    # When it is retried, the same ZIP key is rewritten and the status set, once
    assert finalize(stack, task_id) == "partial_success"
    assert_outcomes(stack, account, task_id, details(stack, account.user, task_id),
                    {"ok": None, "junk": NOT_AN_IMAGE})
    assert refunds_of(stack, account, task_id) == [f"refund#{task_id}#0001#1"]


# ====================================================================== starting the execution


def test_start_execution_failing_is_503_and_the_charge_is_undone(
    stack: Stack, faults: Faults
) -> None:
    # Given Step Functions refusing StartExecution
    account = new_account(stack, "start")
    urls = photos(stack, account, 3)
    faults.add(Fault("stepfunctions", "StartExecution", client_error("ServiceUnavailable", 503)))
    # When a batch is created
    reply = stack.call("POST", "/api/tasks/batch", user=account.user,
                       body={"feature_id": "basic_clean", "input_images": urls})
    # Then the client hears 503 and every image's charge is refunded
    assert_error(reply, 503, 5000, START_FAILED)
    [summary] = stack.call("GET", "/api/tasks", user=account.user).body["data"]["tasks"]
    task = details(stack, account.user, summary["id"])
    assert task["status"] == "failed" and task["error_message"] == START_FAILED
    assert [(i["status"], i["error_code"], i["retryable"]) for i in task["batch_items"]] == [
        ("failed", "start_failed", True)] * 3
    assert charges_of(stack, account, summary["id"]) == [3 * COST]
    assert len(refunds_of(stack, account, summary["id"])) == 3
    assert_books(stack, account, balance=account.initial, successes={summary["id"]: 0})


def test_start_whose_reply_is_lost_after_starting_moves_no_money_twice(
    stack: Stack, faults: Faults
) -> None:
    # Given StartExecution that really starts the execution but whose reply times out
    account = new_account(stack, "start")
    urls = photos(stack, account, 2)
    faults.add(Fault("stepfunctions", "StartExecution",
                     lambda op: ReadTimeoutError(endpoint_url="https://states"), times=1,
                     lose_reply=True))
    # When a batch is created
    reply = stack.call("POST", "/api/tasks/batch", user=account.user,
                       body={"feature_id": "basic_clean", "input_images": urls})
    # Then the client hears 503 and is refunded
    assert_error(reply, 503, 5000, START_FAILED)
    [summary] = stack.call("GET", "/api/tasks", user=account.user).body["data"]["tasks"]
    task_id = summary["id"]
    # When the execution that did start runs anyway
    drive_round(stack, task_id)
    # Then its items lose their conditions: no processing, no output, no second refund
    task = details(stack, account.user, task_id)
    assert [item["error_code"] for item in task["batch_items"]] == ["start_failed"] * 2
    assert output_keys(stack, task_id) == []
    assert len(refunds_of(stack, account, task_id)) == 2
    assert_books(stack, account, balance=account.initial, successes={task_id: 0})


def _failed_batch(stack: Stack, account: Account) -> str:
    urls = [put_upload(stack, account.user, "fix.jpg", HTML), *photos(stack, account, 1)]
    task_id = create_batch(stack, account.user, urls)
    drive_round(stack, task_id)
    put_upload(stack, account.user, "fix.jpg", photo_jpeg())
    return task_id


def test_retry_whose_start_fails_is_503_and_its_charge_is_undone(
    stack: Stack, faults: Faults
) -> None:
    # Given a partial batch, and Step Functions refusing the retry's execution
    account = new_account(stack, "restart")
    task_id = _failed_batch(stack, account)
    faults.add(Fault("stepfunctions", "StartExecution", client_error("ServiceUnavailable", 503)))
    # When the user retries
    reply = stack.call("POST", f"/api/tasks/{task_id}/retry-failed", user=account.user)
    # Then it is 503 and the retry's charge is refunded: the books are as before the retry
    assert_error(reply, 503, 5000, START_FAILED)
    assert charges_of(stack, account, task_id) == [2 * COST, COST]
    assert_books(stack, account, balance=account.initial - COST, successes={task_id: 1})
    assert details(stack, account.user, task_id)["batch_items"][1]["status"] == "success"


def _retry_refused_once(stack: Stack, faults: Faults) -> tuple[Account, str]:
    """A partial batch whose retry Step Functions refused once (503)."""
    account = new_account(stack, "restart")
    task_id = _failed_batch(stack, account)
    faults.add(Fault("stepfunctions", "StartExecution", client_error("ServiceUnavailable", 503),
                     times=1))
    reply = stack.call("POST", f"/api/tasks/{task_id}/retry-failed", user=account.user)
    assert reply.status == 503
    return account, task_id


def test_retry_after_a_failed_retry_start_is_still_possible(
    stack: Stack, faults: Faults
) -> None:
    account, task_id = _retry_refused_once(stack, faults)
    item = details(stack, account.user, task_id)["batch_items"][0]
    assert (item["status"], item["retryable"]) == ("failed", True)
    again = stack.call("POST", f"/api/tasks/{task_id}/retry-failed", user=account.user)
    assert again.status == 200, again.body


def test_a_failed_retry_start_is_closed_by_an_execution_that_zips_the_round(
    stack: Stack, faults: Faults
) -> None:
    # Given a partial batch (image 0 failed, image 1 done) whose retry got a 503: round 2's
    # charge undone, and nothing of round 2 ever runs
    account, task_id = _retry_refused_once(stack, faults)
    # Then the task waits for round 2's closing execution, which finalizes it with the ZIP
    assert details(stack, account.user, task_id)["status"] == "processing"
    assert run_round(stack, task_id, name=f"{task_id}-r2-close") == []
    task = details(stack, account.user, task_id)
    assert (task["status"], task["batch_success"], task["batch_failed"]) == (
        "partial_success", 1, 1)
    manifest = json.loads(zip_of(stack, account.user, task_id).read("manifest.json"))
    assert [(e["status"], e["attempt"]) for e in manifest["items"]] == [
        ("failed", 2), ("success", 1)]
    assert_books(stack, account, balance=account.initial - COST, successes={task_id: 1})


# ====================================================================== deliveries


def test_duplicate_and_reordered_catch_deliveries_refund_once(stack: Stack) -> None:
    # Given a 2-item batch where item 0's Catch (record_failure) arrives before its process
    # event, and both are delivered twice
    account = new_account(stack, "dup")
    task_id = create_batch(stack, account.user, photos(stack, account, 2))
    start(stack, task_id)
    outcomes = [
        record_failure(stack, task_id, 0, "Sandbox.Timedout")["status"],
        record_failure(stack, task_id, 0, "Sandbox.Timedout")["detail"],
        process(stack, task_id, 0, 1)["status"],
        process(stack, task_id, 0, 1)["status"],
    ]
    # Then the first Catch wins, the rest do nothing: one refund, no output for item 0
    assert outcomes == ["failed", "skipped", "failed", "failed"]
    process(stack, task_id, 1, 1)
    finalize(stack, task_id)
    assert output_keys(stack, task_id) == [f"outputs/{task_id}/0001-a1.jpg"]
    assert_outcomes(stack, account, task_id, details(stack, account.user, task_id),
                    {"caught": LAMBDA_TIMEOUT, "ok": None})
    assert refunds_of(stack, account, task_id) == [f"refund#{task_id}#0000#1"]


def test_stale_events_of_an_earlier_attempt_change_nothing(stack: Stack) -> None:
    # Given a batch whose failed item was retried (attempt 2 pending)
    account = new_account(stack, "stale")
    task_id = _failed_batch(stack, account)
    assert stack.call("POST", f"/api/tasks/{task_id}/retry-failed",
                      user=account.user).status == 200
    start(stack, task_id, 2)
    # When round 1's events for that item arrive again, and round 1's finalize too
    replies = [process(stack, task_id, 0, 1), record_failure(stack, task_id, 0, "X", 1)]
    early = finalize(stack, task_id, 1)
    # Then they are skipped: attempt 2 is untouched, no extra refund, no status change
    assert [r["detail"] for r in replies] == ["skipped", "skipped"]
    assert early == "waiting"
    task = details(stack, account.user, task_id)
    assert (task["status"], task["batch_items"][0]["status"]) == ("processing", "pending")
    assert refunds_of(stack, account, task_id) == [f"refund#{task_id}#0000#1"]
    # And attempt 2 then completes the batch
    assert process(stack, task_id, 0, 2)["status"] == "success"
    assert finalize(stack, task_id, 2) == "success"
    assert_books(stack, account, balance=account.initial - 2 * COST, successes={task_id: 2})


def _interleaved_duplicate(stack: Stack, monkeypatch: pytest.MonkeyPatch
                           ) -> tuple[Account, str, list[dict[str, Any]]]:
    """Two deliveries of the same attempt overlap: the second runs to completion while the
    first is still rendering (Lambda is at-least-once; a retried Invoke does exactly this)."""
    account = new_account(stack, "twice")
    task_id = create_batch(stack, account.user, photos(stack, account, 1))
    start(stack, task_id)
    real = processing_mod.run_pipeline
    inner: list[dict[str, Any]] = []
    overlapped: list[bool] = []

    def overlapping(*args: Any, **kwargs: Any) -> Any:
        if not overlapped:
            overlapped.append(True)
            inner.append(process(stack, task_id, 0, 1))
        return real(*args, **kwargs)

    monkeypatch.setattr(processing_mod, "run_pipeline", overlapping)
    outer = process(stack, task_id, 0, 1)
    monkeypatch.setattr(processing_mod, "run_pipeline", real)
    return account, task_id, [inner[0], outer]


def test_overlapping_duplicate_delivery_is_charged_and_counted_once(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two overlapping deliveries of the same item attempt
    account, task_id, replies = _interleaved_duplicate(stack, monkeypatch)
    # Then one of them counted the success, once, and the money is the cost of one image
    assert [r["status"] for r in replies] == ["success", "success"]
    task = details(stack, account.user, task_id)
    assert (task["batch_success"], task["batch_failed"]) == (1, 0)
    assert_books(stack, account, balance=account.initial - COST, successes={task_id: 1})


def test_overlapping_duplicate_delivery_keeps_the_output_and_finalizes(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    account, task_id, _ = _interleaved_duplicate(stack, monkeypatch)
    assert output_keys(stack, task_id) == [f"outputs/{task_id}/0000-a1.jpg"]
    assert finalize(stack, task_id) == "success"
    assert zip_of(stack, account.user, task_id).namelist() == ["result_1.jpg", "manifest.json"]


EVENTS = [("process", 0), ("process", 1), ("process", 2), ("catch", 0), ("catch", 2),
          ("finalize", -1)]


@settings(max_examples=6, deadline=None, derandomize=True)
@given(order=st.permutations(EVENTS + EVENTS[:3]))
def test_any_order_and_duplication_of_deliveries_keeps_the_books(
    stack: Stack, order: list[tuple[str, int]]
) -> None:
    # Given a 3-item batch (item 2 is junk) and its item events shuffled and duplicated,
    # Catches (record_failure with a timeout) mixed in as an at-least-once system may deliver
    account = new_account(stack, "shuffle")
    urls = [*photos(stack, account, 2), put_upload(stack, account.user, "junk.jpg", HTML)]
    task_id = create_batch(stack, account.user, urls)
    start(stack, task_id)
    # When they are delivered in this order, then the state machine's final finalize runs
    for kind, index in order:
        if kind == "process":
            process(stack, task_id, index, 1)
        elif kind == "catch":
            record_failure(stack, task_id, index, "States.Timeout")
        else:
            finalize(stack, task_id)
    finalize(stack, task_id)
    # Then every item settled once, and the task, the refunds and the money agree
    task = details(stack, account.user, task_id)
    outcome: dict[str, Expected] = {}
    for item in task["batch_items"]:
        assert item["status"] in ("success", "failed")
        outcome[f"item{item['index']}"] = (None if item["status"] == "success" else
                                           (item["error_code"], item["error_message"]))
    assert outcome["item2"] in (NOT_AN_IMAGE, LAMBDA_TIMEOUT)
    assert_outcomes(stack, account, task_id, task, outcome)
    failed = [i for i, e in enumerate(outcome.values()) if e is not None]
    assert refunds_of(stack, account, task_id) == [f"refund#{task_id}#{i:04d}#1" for i in failed]
