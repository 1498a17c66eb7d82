"""Webhooks: users register endpoints; every final status of a task is announced to each
endpoint of its owner through a queue; a delivery signs and POSTs one message, and a failed
one is tried again later, with backoff, for more than a day before it goes to the dead-letter
queue."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING

from aws_lambda_powertools.metrics import MetricUnit

from pixelbatch.clock import now_iso
from pixelbatch.errors import WebhookNotFound, WebhookUrlInvalid
from pixelbatch.imaging.failures import ItemFailure
from pixelbatch.models import Task, TaskStatus, Webhook
from pixelbatch.observability import logger, metrics
from pixelbatch.repos.tasks import TaskStore
from pixelbatch.repos.webhooks import DeliveryQueue, WebhookStore

if TYPE_CHECKING:
    from pixelbatch.contract import WebhookBody
    from pixelbatch.imaging.fetch import ReceiverPolicy

MAX_WEBHOOKS_PER_USER = 10
EVENT_TYPE = "task.finished"
# Seconds a message stays hidden after its n-th failed attempt (n = 1, 2, ...): the next
# receive is the next attempt. 8 attempts over about 27.6 hours; the queue's maxReceiveCount
# (template.yaml) is the number of attempts, after which the message goes to the DLQ.
RETRY_SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 36000)
ATTEMPTS = len(RETRY_SCHEDULE) + 1
USER_AGENT = "PixelBatch-Webhooks/1.0"


class WebhookService:
    """The routes: register, list and delete the caller's endpoints."""

    def __init__(self, store: WebhookStore, *, loopback_receivers: bool) -> None:
        self._store = store
        self._loopback = loopback_receivers

    def register(self, user_id: str, body: WebhookBody) -> Webhook:
        # The URL check and signing come with requests and hmac: only these two methods need
        # them, not the announcer that every task-finishing function builds.
        from pixelbatch.imaging.fetch import check_receiver_url
        from pixelbatch.webhook_signing import new_secret

        try:
            check_receiver_url(body.url, loopback_http=self._loopback)
        except ItemFailure as failure:
            raise WebhookUrlInvalid(_url_message(failure)) from failure
        webhook = Webhook(webhook_id=f"wh_{uuid.uuid4().hex}", owner_id=user_id, url=body.url,
                          secret=new_secret(), created_at=now_iso())
        self._store.add(webhook, limit=MAX_WEBHOOKS_PER_USER)
        return webhook

    def list(self, user_id: str) -> list[Webhook]:
        return self._store.list_for(user_id)

    def delete(self, user_id: str, webhook_id: str) -> None:
        if len(webhook_id) > 64 or not self._store.delete(user_id, webhook_id):
            raise WebhookNotFound()


def _url_message(failure: ItemFailure) -> str:
    if failure.code == "blocked_destination":
        return "Webhook地址必须指向公网地址"
    return "Webhook地址必须是https URL"


# ---------------------------------------------------------------------- announcing


@dataclass(frozen=True)
class DeliveryMessage:
    """What waits in the queue: which endpoint, and the exact body every attempt sends."""

    event_id: str
    owner_id: str
    webhook_id: str
    body: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> DeliveryMessage:
        data = json.loads(text)
        names = [spec.name for spec in fields(cls)]
        if not isinstance(data, dict) or not all(isinstance(data.get(n), str) for n in names):
            raise ValueError(f"a delivery message needs the strings {', '.join(names)}")
        return cls(**{name: data[name] for name in names})


def event_id(task_id: str, round_no: int) -> str:
    """The same for every attempt and every endpoint of one final status (a task reaches a
    final status once per round: a retry opens a new round)."""
    return f"msg_{task_id}_r{round_no}"


def finished_body(task: Task, status: TaskStatus, *, succeeded: int, failed: int) -> str:
    """``refund_amount`` is the quota returned for the images that did not succeed, so that
    net charge = cost x successes, as the ledger has it."""
    payload = {
        "type": EVENT_TYPE,
        "timestamp": now_iso(),
        "data": {
            "task_id": task.task_id,
            "status": status.value,
            "batch_total": task.batch_total,
            "batch_success": succeeded,
            "batch_failed": failed,
            "refund_amount": task.quota_cost * (task.batch_total - succeeded),
        },
    }
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


class WebhookAnnouncer:
    """Queues one message per endpoint of the owner, once per final status."""

    def __init__(self, store: WebhookStore, queue: DeliveryQueue, tasks: TaskStore) -> None:
        self._store = store
        self._queue = queue
        self._tasks = tasks

    def task_finished(self, task: Task, status: TaskStatus, *, succeeded: int,
                      failed: int) -> int:
        """The number of messages queued. A message that cannot be queued releases the claim
        and raises, so that the caller's retry announces again (with the same event id)."""
        endpoints = self._store.list_for(task.owner_id)
        if not endpoints or not self._tasks.claim_announcement(task.task_id, task.round):
            return 0
        body = finished_body(task, status, succeeded=succeeded, failed=failed)
        identifier = event_id(task.task_id, task.round)
        try:
            for endpoint in endpoints:
                message = DeliveryMessage(event_id=identifier, owner_id=task.owner_id,
                                          webhook_id=endpoint.webhook_id, body=body)
                self._queue.send(message.to_json())
        except Exception:
            logger.exception("webhook messages not queued", task_id=task.task_id)
            self._tasks.release_announcement(task.task_id, task.round)
            raise
        metrics.add_metric(name="WebhookMessagesQueued", unit=MetricUnit.Count,
                           value=len(endpoints))
        return len(endpoints)


# ---------------------------------------------------------------------- delivering


class DeliveryFailed(Exception):
    """The receiver did not take the message; it is tried again later."""


@dataclass(frozen=True)
class Attempt:
    body: str
    receive_count: int
    receipt_handle: str


def retry_delay(receive_count: int) -> int:
    """Seconds to wait after the ``receive_count``-th attempt failed."""
    return RETRY_SCHEDULE[min(max(receive_count, 1), len(RETRY_SCHEDULE)) - 1]


class DeliveryService:
    def __init__(self, store: WebhookStore, queue: DeliveryQueue, policy: ReceiverPolicy,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._queue = queue
        self._policy = policy
        self._clock = clock

    def deliver(self, attempt: Attempt) -> str:
        """``delivered``, or ``dropped`` when the endpoint is gone; raises DeliveryFailed (after
        hiding the message until its next attempt is due) when the receiver did not take it."""
        message = DeliveryMessage.from_json(attempt.body)
        endpoint = self._store.get(message.owner_id, message.webhook_id)
        if endpoint is None:
            logger.info("webhook deleted; message dropped", webhook_id=message.webhook_id,
                        event_id=message.event_id)
            return "dropped"
        from pixelbatch.imaging.fetch import post_to_receiver
        from pixelbatch.webhook_signing import signed_headers

        timestamp = int(self._clock())
        headers = {**signed_headers([endpoint.secret], message.event_id, timestamp,
                                    message.body), "user-agent": USER_AGENT}
        try:
            status = post_to_receiver(endpoint.url, message.body.encode(), headers,
                                      self._policy)
            problem = None if 200 <= status < 300 else f"HTTP {status}"
        except ItemFailure as failure:
            problem = failure.detail or failure.code
        if problem is None:
            metrics.add_metric(name="WebhooksDelivered", unit=MetricUnit.Count, value=1)
            return "delivered"
        delay = retry_delay(attempt.receive_count)
        logger.warning("webhook delivery failed", webhook_id=message.webhook_id,
                       event_id=message.event_id, attempt=attempt.receive_count,
                       problem=problem, retry_in_seconds=delay)
        metrics.add_metric(name="WebhookAttemptsFailed", unit=MetricUnit.Count, value=1)
        if attempt.receive_count < ATTEMPTS:
            self._queue.retry_after(attempt.receipt_handle, delay)
        raise DeliveryFailed(f"{message.event_id} to {message.webhook_id}: {problem}")
