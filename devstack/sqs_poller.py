"""SQS event sources locally: what Lambda's event source mapping does for a queue.

One thread per mapping polls the queue with the function's execution role (as the mapping
does on AWS, so IAM is checked on ReceiveMessage and DeleteMessage), invokes the function
through moto's Lambda with a batch in the SQS event shape, then deletes what was processed:
every message when the invocation succeeded, all but the reported ones with
``ReportBatchItemFailures``, none when the invocation failed. What is not deleted comes back
when its visibility timeout ends (the queue's, or what the function set), and moves to the
dead-letter queue after the redrive policy's ``maxReceiveCount`` receives, all done by moto.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from devstack.template import Function, Queue, QueueSource

__all__ = ["QueuePoller", "sqs_event"]

log = logging.getLogger("devstack.sqs")

# (function, qualifier, payload) -> (function error or None, response payload)
Invoke = Callable[[Function, str | None, str], tuple[str | None, bytes]]
ClientFactory = Callable[[str], Any]  # function logical id -> an SQS client acting as its role


def sqs_event(messages: Iterable[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """The event Lambda hands a function for a batch of SQS messages."""
    records = []
    for message in messages:
        attributes = message.get("Attributes") or {}
        records.append({
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": {
                "ApproximateReceiveCount": attributes.get("ApproximateReceiveCount", "1"),
                "SentTimestamp": attributes.get("SentTimestamp", "0"),
                "SenderId": attributes.get("SenderId", ""),
                "ApproximateFirstReceiveTimestamp":
                    attributes.get("ApproximateFirstReceiveTimestamp", "0"),
            },
            "messageAttributes": message.get("MessageAttributes") or {},
            "md5OfBody": message.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn,
            "awsRegion": region,
        })
    return {"Records": records}


class QueuePoller:
    """Polls every enabled SQS event source until stopped."""

    def __init__(self, sources: Iterable[QueueSource], queues: Iterable[Queue],
                 functions: Callable[[str], Function], sqs_for: ClientFactory, invoke: Invoke,
                 region: str, wait_seconds: int = 1) -> None:
        by_arn = {queue.arn: queue for queue in queues}
        self._sources = [(source, by_arn[source.queue_arn], functions(source.function_id))
                         for source in sources if source.enabled]
        self._sqs_for = sqs_for
        self._invoke = invoke
        self._region = region
        self._wait = wait_seconds
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> QueuePoller:
        for source, queue, function in self._sources:
            sqs = self._sqs_for(function.logical_id)
            # Lambda reads the queue's attributes when the mapping is created
            sqs.get_queue_attributes(QueueUrl=queue.url, AttributeNames=["VisibilityTimeout"])
            thread = threading.Thread(target=self._run, args=(source, queue, function, sqs),
                                      name=f"devstack-sqs-{source.logical_id}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)
        self._threads.clear()

    def _run(self, source: QueueSource, queue: Queue, function: Function, sqs: Any) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once(source, queue, function, sqs)
            except Exception:  # keep polling, as the mapping does
                log.exception("%s: polling %s failed", source.logical_id, queue.name)
                self._stop.wait(1)

    def poll_once(self, source: QueueSource, queue: Queue, function: Function, sqs: Any) -> int:
        """Receive one batch, invoke, delete what was processed; the number received."""
        reply = sqs.receive_message(
            QueueUrl=queue.url, MaxNumberOfMessages=min(source.batch_size, 10),
            WaitTimeSeconds=self._wait, AttributeNames=["All"], MessageAttributeNames=["All"],
        )
        messages = reply.get("Messages") or []
        if not messages:
            return 0
        payload = json.dumps(sqs_event(messages, queue.arn, self._region))
        error, response = self._invoke(function, source.qualifier, payload)
        if error is not None:
            log.warning("%s: %s failed (%s); the batch comes back after its visibility timeout",
                        source.logical_id, function.logical_id, error)
            return len(messages)
        ids = {str(message["MessageId"]) for message in messages}
        failed = _reported_failures(response, ids) if source.report_item_failures else set()
        for message in messages:
            if message["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=queue.url, ReceiptHandle=message["ReceiptHandle"])
        return len(messages)


def _reported_failures(response: bytes, ids: set[str]) -> set[str]:
    """The messages the function reported failed; an unreadable reply fails them all."""
    try:
        document = json.loads(response or b"{}")
    except ValueError:
        return ids
    failures = document.get("batchItemFailures", []) if isinstance(document, dict) else None
    if not isinstance(failures, list):
        return ids
    reported = {str(entry.get("itemIdentifier")) for entry in failures
                if isinstance(entry, dict)}
    return ids if reported - ids else reported
