"""Webhooks through the real handlers on moto: the routes and their errors, the announcement
of every final status exactly once, and the delivery function's signed POSTs, retries with
backoff and the dead-letter queue."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError
from pixelbatch.imaging.failures import ItemFailure
from pixelbatch.imaging.fetch import ReceiverPolicy, post_to_receiver
from pixelbatch.services.webhooks import ATTEMPTS, MAX_WEBHOOKS_PER_USER, RETRY_SCHEDULE
from standardwebhooks import Webhook, WebhookVerificationError

from devstack.sqs_poller import sqs_event
from tests.integration.conftest import Stack
from tests.integration.test_processing import create, photo_urls, process, run_round
from tests.integration.test_reconciler import stuck_batch
from tests.support.http_events import REPO
from tests.support.receiver import Receiver, receiver


@pytest.fixture
def hooks() -> Iterator[Receiver]:
    with receiver() as found:
        yield found


def register(stack: Stack, user: str, url: str) -> dict[str, Any]:
    reply = stack.call("POST", "/api/webhooks", user=user, body={"url": url})
    assert reply.status == 200, reply.body
    data: dict[str, Any] = reply.body["data"]
    return data


def listed(stack: Stack, user: str) -> list[dict[str, Any]]:
    reply = stack.call("GET", "/api/webhooks", user=user)
    assert reply.status == 200, reply.body
    found: list[dict[str, Any]] = reply.body["data"]["webhooks"]
    return found


def queue_url(stack: Stack, logical_id: str = "WebhookDeliveryQueue") -> str:
    [queue] = [q for q in stack.template.queues if q.logical_id == logical_id]
    return queue.url


def receive(stack: Stack, logical_id: str = "WebhookDeliveryQueue") -> list[dict[str, Any]]:
    """What the event source mapping would receive now (at most 10)."""
    messages: list[dict[str, Any]] = stack_sqs(stack).receive_message(
        QueueUrl=queue_url(stack, logical_id), MaxNumberOfMessages=10, AttributeNames=["All"],
    ).get("Messages", [])
    return messages


def stack_sqs(stack: Stack) -> Any:
    return boto3.client("sqs", region_name=stack.template.naming.region)


def deliver(stack: Stack, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """One invocation of the delivery function as the SQS event source makes it."""
    [queue] = [q for q in stack.template.queues if q.logical_id == "WebhookDeliveryQueue"]
    return stack.invoke("WebhookDeliveryFunction",
                        sqs_event(messages, queue.arn, stack.template.naming.region))


def finished_batch(stack: Stack, user: str, count: int = 2) -> str:
    task_id = create(stack, user, photo_urls(stack, user, count))
    run_round(stack, task_id)
    return task_id


# ---------------------------------------------------------------------- routes


def test_a_webhook_is_registered_listed_without_its_secret_and_deleted(stack: Stack) -> None:
    # Given a user
    user = stack.user("wendy")
    # When they register an endpoint
    created = register(stack, user, "https://hooks.example.com/pixelbatch")
    # Then they get its id and a Standard Webhooks secret, shown this once
    assert created["url"] == "https://hooks.example.com/pixelbatch"
    assert created["webhook_id"].startswith("wh_")
    assert created["secret"].startswith("whsec_") and len(created["secret"]) >= 6 + 32
    assert listed(stack, user) == [{key: created[key]
                                    for key in ("webhook_id", "url", "created_at")}]
    # And nobody else sees it or can delete it
    other = stack.user("walter")
    assert listed(stack, other) == []
    reply = stack.call("DELETE", f"/api/webhooks/{created['webhook_id']}", user=other)
    assert (reply.status, reply.body["error"]) == (404, "webhook_not_found")
    # When the owner deletes it, it is gone, and deleting again is 404
    reply = stack.call("DELETE", f"/api/webhooks/{created['webhook_id']}", user=user)
    assert reply.status == 200 and reply.body["data"]["deleted"] is True
    assert listed(stack, user) == []
    again = stack.call("DELETE", f"/api/webhooks/{created['webhook_id']}", user=user)
    assert (again.status, again.body["errorCode"]) == (404, 4004)


@pytest.mark.parametrize(("body", "key"), [
    ("not json", "invalid_body"),
    ([], "invalid_body"),
    ({}, "invalid_body"),
    ({"url": 42}, "invalid_body"),
    ({"url": "https://x.example/" + "a" * 2100}, "invalid_body"),
    ({"url": "http://hooks.example.com/"}, "webhook_url_invalid"),
    ({"url": "ftp://hooks.example.com/"}, "webhook_url_invalid"),
    ({"url": "hooks.example.com"}, "webhook_url_invalid"),
    ({"url": "https://user:pw@hooks.example.com/"}, "webhook_url_invalid"),
    ({"url": "https://10.0.0.7/hook"}, "webhook_url_invalid"),
    ({"url": "https://169.254.169.254/latest/meta-data"}, "webhook_url_invalid"),
    ({"url": "https://[::1]/hook"}, "webhook_url_invalid"),
    ({"url": "https://[::ffff:127.0.0.1]/hook"}, "webhook_url_invalid"),
    ({"url": "https://localhost/hook"}, "webhook_url_invalid"),
    ({"url": "http://127.0.0.2:8080/hook"}, "webhook_url_invalid"),
    ({"url": "http://localhost:8080/hook"}, "webhook_url_invalid"),
])
def test_a_refused_registration_says_why_and_leaves_nothing(
    stack: Stack, body: Any, key: str
) -> None:
    user = stack.user("rita")
    reply = stack.call("POST", "/api/webhooks", user=user, body=body)
    assert (reply.status, reply.body["errorCode"], reply.body["error"]) == (400, 4001, key)
    assert reply.body["message"]
    assert listed(stack, user) == []


def test_past_the_limit_a_registration_is_refused(stack: Stack) -> None:
    user = stack.user("lena")
    for number in range(MAX_WEBHOOKS_PER_USER):
        register(stack, user, f"https://hooks.example.com/{number}")
    reply = stack.call("POST", "/api/webhooks", user=user,
                       body={"url": "https://hooks.example.com/one-more"})
    assert (reply.status, reply.body["error"]) == (400, "too_many_webhooks")
    assert len(listed(stack, user)) == MAX_WEBHOOKS_PER_USER


# ---------------------------------------------------------------------- announcing


def test_a_finished_batch_is_queued_once_per_endpoint(stack: Stack) -> None:
    # Given a user with two endpoints, and another user with one
    user = stack.user("fiona", quota=10)
    first = register(stack, user, "https://a.example.com/hook")
    second = register(stack, user, "https://b.example.com/hook")
    register(stack, stack.user("felix"), "https://c.example.com/hook")
    # When their batch finishes and finalize is delivered twice
    task_id = finished_batch(stack, user)
    stack.invoke("FinalizeFunction", {"task_id": task_id, "round": 1})
    # Then exactly one message per endpoint of the owner waits, with one event id
    messages = [json.loads(m["Body"]) for m in receive(stack)]
    assert sorted(m["webhook_id"] for m in messages) == sorted(
        [first["webhook_id"], second["webhook_id"]])
    assert {m["event_id"] for m in messages} == {f"msg_{task_id}_r1"}
    [body] = {m["body"] for m in messages}
    event = json.loads(body)
    assert event["type"] == "task.finished" and event["timestamp"]
    assert event["data"] == {"task_id": task_id, "status": "success", "batch_total": 2,
                             "batch_success": 2, "batch_failed": 0, "refund_amount": 0}


def test_a_retried_round_is_announced_again_with_a_new_event_id(stack: Stack) -> None:
    # Given a batch whose second image failed, announced once
    user = stack.user("rory", quota=10)
    register(stack, user, "https://a.example.com/hook")
    bad = stack.s3.put_object(Bucket=stack.env["UPLOADS_BUCKET"],
                              Key=f"uploads/{user}/junk.jpg", Body=b"not an image")
    assert bad
    junk = f"s3://{stack.env['UPLOADS_BUCKET']}/uploads/{user}/junk.jpg"
    urls = [*photo_urls(stack, user, 1), junk]
    task_id = create(stack, user, urls)
    run_round(stack, task_id)
    [announced] = [json.loads(m["Body"]) for m in receive(stack)]
    data = json.loads(announced["body"])["data"]
    assert (data["status"], data["batch_failed"], data["refund_amount"]) == (
        "partial_success", 1, 1)
    # When the failed image is retried and fails again
    assert stack.call("POST", f"/api/tasks/{task_id}/retry-failed", user=user).status == 200
    run_round(stack, task_id, 2)
    # Then the second final status has its own event (the first is still in flight)
    assert [json.loads(m["Body"])["event_id"] for m in receive(stack)] == [f"msg_{task_id}_r2"]


def test_a_cancelled_batch_is_announced_cancelled_by_its_closing_execution(stack: Stack) -> None:
    # Given a 3-image batch with one image done and an endpoint
    user = stack.user("carla", quota=10)
    register(stack, user, "https://a.example.com/hook")
    task_id = create(stack, user, photo_urls(stack, user, 3))
    stack.invoke("StartBatchFunction", {"task_id": task_id, "round": 1})
    process(stack, task_id, 0, 1)
    # When the user cancels and the closing execution finalizes (and the reconciler would too)
    assert stack.call("POST", f"/api/tasks/{task_id}/cancel", user=user).status == 200
    run_round(stack, task_id, name=f"{task_id}-close")
    stack.invoke("FinalizeFunction", {"task_id": task_id, "round": 1})
    # Then one message says cancelled, with the quota returned for the two images not done
    [message] = [json.loads(m["Body"]) for m in receive(stack)]
    data = json.loads(message["body"])["data"]
    assert data == {"task_id": task_id, "status": "cancelled", "batch_total": 3,
                    "batch_success": 1, "batch_failed": 0, "refund_amount": 2}


def test_a_batch_the_reconciler_settles_is_announced_by_it(stack: Stack) -> None:
    # Given a batch whose second item was claimed by a worker that died an hour ago
    user = stack.user("rene", quota=10)
    register(stack, user, "https://a.example.com/hook")
    stuck_batch(stack, user)
    # When the scheduled reconciler settles and finalizes it (as its own role)
    event = json.loads((REPO / "events" / "reconciler_scheduled.json").read_text())
    assert stack.invoke("ReconcilerFunction", event)["finalized_tasks"] == 1
    # Then the final status is announced, once
    [message] = [json.loads(m["Body"]) for m in receive(stack)]
    assert json.loads(message["body"])["data"]["status"] == "partial_success"


def test_a_batch_whose_start_failed_is_announced_failed(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an endpoint, and Step Functions refusing StartExecution (after botocore's retries)
    user = stack.user("stella", quota=10)
    register(stack, user, "https://a.example.com/hook")
    urls = photo_urls(stack, user, 2)
    real = BaseClient._make_api_call  # type: ignore[attr-defined]  # private in the stubs

    def call(client: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        if (client.meta.service_model.service_name, operation) == (
                "stepfunctions", "StartExecution"):
            raise ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "injected"},
                               "ResponseMetadata": {"HTTPStatusCode": 503}}, operation)
        return real(client, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", call)
    # When a batch is created: the client hears 503, the charge undone, the task failed
    reply = stack.call("POST", "/api/tasks/batch", user=user,
                       body={"feature_id": "basic_clean", "input_images": urls})
    assert reply.status == 503
    # Then the failed task is announced, everything refunded
    [message] = [json.loads(m["Body"]) for m in receive(stack)]
    data = json.loads(message["body"])["data"]
    assert (data["status"], data["batch_failed"], data["refund_amount"]) == ("failed", 2, 2)


def test_no_endpoint_no_message(stack: Stack) -> None:
    finished_batch(stack, stack.user("nora", quota=10))
    assert receive(stack) == []


# ---------------------------------------------------------------------- delivering


def test_a_delivery_is_signed_as_the_standard_webhooks_library_verifies(
    stack: Stack, hooks: Receiver
) -> None:
    # Given a finished batch announced to a receiver on this machine
    user = stack.user("sven", quota=10)
    endpoint = register(stack, user, hooks.url)
    task_id = finished_batch(stack, user)
    messages = receive(stack)
    # When the delivery function gets the message
    assert deliver(stack, messages) == {"batchItemFailures": []}
    # Then the receiver got the event, and the official library verifies its signature
    [got] = hooks.wait_for(1, timeout=5)
    verified = Webhook(endpoint["secret"]).verify(got.body, got.headers)
    assert verified["data"]["task_id"] == task_id and verified["type"] == "task.finished"
    assert got.headers["webhook-id"] == f"msg_{task_id}_r1"
    assert got.headers["content-type"] == "application/json"
    # And a body changed in transit, or another secret, does not verify
    with pytest.raises(WebhookVerificationError):
        Webhook(endpoint["secret"]).verify(got.body + b" ", got.headers)
    other = register(stack, user, hooks.url)["secret"]
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(got.body, got.headers)


def test_a_refused_delivery_is_retried_later_with_the_same_id(
    stack: Stack, hooks: Receiver
) -> None:
    # Given an announced batch and a receiver that answers 500 first
    user = stack.user("ruth", quota=10)
    endpoint = register(stack, user, hooks.url)
    finished_batch(stack, user)
    hooks.statuses = [500]
    [message] = receive(stack)
    # When the delivery function gets it: it reports the failure and hides the message
    reply = deliver(stack, [message])
    assert reply == {"batchItemFailures": [{"itemIdentifier": message["MessageId"]}]}
    attributes = stack_sqs(stack).get_queue_attributes(
        QueueUrl=queue_url(stack), AttributeNames=["ApproximateNumberOfMessagesNotVisible"])
    assert attributes["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "1"
    # Then the next attempt (made visible now, as if its delay had passed) succeeds
    stack_sqs(stack).change_message_visibility(
        QueueUrl=queue_url(stack), ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
    [again] = receive(stack)
    assert again["Attributes"]["ApproximateReceiveCount"] == "2"
    assert deliver(stack, [again]) == {"batchItemFailures": []}
    first, second = hooks.wait_for(2, timeout=5)
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body
    Webhook(endpoint["secret"]).verify(second.body, second.headers)


def test_after_the_last_attempt_the_message_waits_in_the_dead_letter_queue(
    stack: Stack, hooks: Receiver
) -> None:
    # Given an announced batch and a receiver that always answers 503
    user = stack.user("dana", quota=10)
    register(stack, user, hooks.url)
    finished_batch(stack, user)
    hooks.statuses = [503] * ATTEMPTS
    sqs = stack_sqs(stack)
    # When every attempt fails (each made due at once instead of after its backoff)
    for attempt in range(1, ATTEMPTS + 1):
        [message] = receive(stack)
        assert message["Attributes"]["ApproximateReceiveCount"] == str(attempt)
        assert deliver(stack, [message])["batchItemFailures"]
        sqs.change_message_visibility(QueueUrl=queue_url(stack),
                                      ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
    # Then the queue gives it up to the dead-letter queue, intact, for an operator to redrive
    assert receive(stack) == []
    [dead] = receive(stack, "WebhookDeadLetterQueue")
    assert json.loads(dead["Body"])["event_id"].startswith("msg_")
    assert len({r.headers["webhook-id"] for r in hooks.wait_for(ATTEMPTS, 5)}) == 1


def test_a_deleted_endpoint_s_messages_are_dropped(stack: Stack, hooks: Receiver) -> None:
    user = stack.user("dora", quota=10)
    endpoint = register(stack, user, hooks.url)
    finished_batch(stack, user)
    stack.call("DELETE", f"/api/webhooks/{endpoint['webhook_id']}", user=user)
    assert deliver(stack, receive(stack)) == {"batchItemFailures": []}
    assert hooks.received == []


def test_the_backoff_spans_more_than_a_day_before_the_dead_letter_queue(
    stack: Stack
) -> None:
    assert sum(RETRY_SCHEDULE) >= 24 * 3600
    assert list(RETRY_SCHEDULE) == sorted(RETRY_SCHEDULE)
    assert all(delay <= 12 * 3600 for delay in RETRY_SCHEDULE)  # SQS's visibility limit
    [queue] = [q for q in stack.template.queues if q.logical_id == "WebhookDeliveryQueue"]
    assert queue.properties["RedrivePolicy"]["maxReceiveCount"] == ATTEMPTS
    assert queue.properties["MessageRetentionPeriod"] > sum(RETRY_SCHEDULE)


# ---------------------------------------------------------------------- the SSRF guard


def test_a_name_that_resolves_to_a_private_address_is_refused_at_connect_time(
    hooks: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a public-looking name that resolves to this machine (DNS rebinding)
    port = int(hooks.url.split(":")[2].split("/")[0])
    real = socket.getaddrinfo

    def resolve(host: str, *args: Any, **kwargs: Any) -> Any:
        return real("127.0.0.1" if host == "hooks.example.com" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    # When a delivery goes there, on AWS's policy and on the local stack's
    for loopback in (False, True):
        with pytest.raises(ItemFailure) as refused:
            post_to_receiver(f"https://hooks.example.com:{port}/hooks", b"{}", {},
                             ReceiverPolicy(loopback_http=loopback))
        # Then it is refused before anything is sent
        assert refused.value.code == "blocked_destination"
    assert hooks.received == []
    # And http://127.0.0.1 is reached only where the local stack allows it
    with pytest.raises(ItemFailure) as plain:
        post_to_receiver(hooks.url, b"{}", {}, ReceiverPolicy(loopback_http=False))
    assert plain.value.code == "invalid_input_url"
    assert post_to_receiver(hooks.url, b"{}", {}, ReceiverPolicy(loopback_http=True)) == 200


def test_a_redirect_is_an_answer_not_followed(monkeypatch: pytest.MonkeyPatch) -> None:
    with receiver() as hooks:
        hooks.statuses = [307]
        status = post_to_receiver(hooks.url, b"{}", {}, ReceiverPolicy(loopback_http=True))
        assert status == 307 and len(hooks.received) == 1


def test_the_sample_event_is_one_the_delivery_function_reads(stack: Stack) -> None:
    # events/webhook_delivery.json names an endpoint that does not exist here: it is dropped
    event = json.loads((REPO / "events" / "webhook_delivery.json").read_text())
    assert stack.invoke("WebhookDeliveryFunction", event) == {"batchItemFailures": []}
