"""The local SQS event source: batches in Lambda's event shape, deletes what was processed,
leaves reported failures and failed invocations to come back, and moto's redrive moves a
message that keeps failing to the dead-letter queue."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from devstack.resources import create_queues
from devstack.sqs_poller import QueuePoller
from devstack.template import Function, Queue, QueueSource, Template


@pytest.fixture
def sqs(template: Template, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", template.naming.region)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = boto3.client("sqs")
        create_queues(client, template.queues)
        yield client


class Invocations:
    def __init__(self, reply: Any = None, error: str | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.reply, self.error = reply, error
        self.calls: list[tuple[str, str | None]] = []

    def __call__(self, function: Function, qualifier: str | None, payload: str
                 ) -> tuple[str | None, bytes]:
        self.calls.append((function.logical_id, qualifier))
        self.events.append(json.loads(payload))
        reply = self.reply(self.events[-1]) if callable(self.reply) else self.reply
        return self.error, json.dumps(reply).encode()


def _setup(template: Template, sqs: Any, invoke: Invocations) -> tuple[QueuePoller, QueueSource,
                                                                        Queue, Function]:
    [source] = template.queue_sources
    [queue] = [q for q in template.queues if q.arn == source.queue_arn]
    function = template.function(source.function_id)
    poller = QueuePoller(template.queue_sources, template.queues, template.function,
                         lambda _: sqs, invoke, template.naming.region, wait_seconds=0)
    return poller, source, queue, function


def _left(sqs: Any, queue: Queue) -> int:
    """Messages not deleted: waiting, or in flight until their visibility timeout ends."""
    attributes = sqs.get_queue_attributes(QueueUrl=queue.url, AttributeNames=["All"])
    return sum(int(attributes["Attributes"][name]) for name in (
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"))


def test_the_template_maps_the_delivery_queue_to_the_delivery_alias(template: Template) -> None:
    [source] = template.queue_sources
    assert (source.function_id, source.qualifier) == ("WebhookDeliveryFunction", "live")
    assert source.report_item_failures and source.batch_size == 5


def test_a_processed_batch_is_deleted_and_reported_failures_stay(
    template: Template, sqs: Any
) -> None:
    # Given three messages and a function that reports the second as failed
    invoke = Invocations(lambda event: {"batchItemFailures": [
        {"itemIdentifier": event["Records"][1]["messageId"]}]})
    poller, source, queue, function = _setup(template, sqs, invoke)
    for body in ("a", "b", "c"):
        sqs.send_message(QueueUrl=queue.url, MessageBody=body)
    # When the mapping polls once
    assert poller.poll_once(source, queue, function, sqs) == 3
    # Then the function got them in Lambda's SQS event shape, through its alias
    [event] = invoke.events
    assert invoke.calls == [("WebhookDeliveryFunction", "live")]
    assert [r["body"] for r in event["Records"]] == ["a", "b", "c"]
    record = event["Records"][0]
    assert record["eventSource"] == "aws:sqs" and record["eventSourceARN"] == queue.arn
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    # And only the reported one is left, to come back when its visibility timeout ends
    assert _left(sqs, queue) == 1
    assert sqs.receive_message(QueueUrl=queue.url).get("Messages") is None
    [receipt] = [r["receiptHandle"] for r in event["Records"] if r["body"] == "b"]
    sqs.change_message_visibility(QueueUrl=queue.url, ReceiptHandle=receipt,
                                  VisibilityTimeout=0)
    [left] = sqs.receive_message(QueueUrl=queue.url)["Messages"]
    assert left["Body"] == "b"


@pytest.mark.parametrize(("reply", "error"), [
    (None, "Unhandled"),
    ({"batchItemFailures": [{"itemIdentifier": "not-in-the-batch"}]}, None),
    ({"batchItemFailures": "everything"}, None),
])
def test_a_failed_invocation_or_an_unreadable_reply_leaves_the_whole_batch(
    template: Template, sqs: Any, reply: Any, error: str | None
) -> None:
    poller, source, queue, function = _setup(template, sqs, Invocations(reply, error))
    sqs.send_message(QueueUrl=queue.url, MessageBody="x")
    sqs.send_message(QueueUrl=queue.url, MessageBody="y")
    assert poller.poll_once(source, queue, function, sqs) == 2
    assert _left(sqs, queue) == 2


def test_a_message_that_keeps_failing_ends_in_the_dead_letter_queue(
    template: Template, sqs: Any
) -> None:
    invoke = Invocations(lambda event: {"batchItemFailures": [
        {"itemIdentifier": r["messageId"]} for r in event["Records"]]})
    poller, source, queue, function = _setup(template, sqs, invoke)
    sqs.set_queue_attributes(QueueUrl=queue.url, Attributes={"VisibilityTimeout": "0"})
    sqs.send_message(QueueUrl=queue.url, MessageBody="poison")
    receives = queue.properties["RedrivePolicy"]["maxReceiveCount"]
    for _ in range(receives):
        assert poller.poll_once(source, queue, function, sqs) == 1
    assert poller.poll_once(source, queue, function, sqs) == 0
    [dead_queue] = [q for q in template.queues
                    if q.arn == queue.properties["RedrivePolicy"]["deadLetterTargetArn"]]
    [dead] = sqs.receive_message(QueueUrl=dead_queue.url)["Messages"]
    assert dead["Body"] == "poison"
