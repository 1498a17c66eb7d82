"""SQS event source: sign and POST each queued webhook message. A message the receiver did not
take is reported as a batch item failure, hidden until its next attempt is due.

The partial batch response is built here rather than by Powertools' batch utility, whose import
(asyncio and every event source's data class) would cost more than the rest of this function."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pixelbatch.container import build_container, require_settings
from pixelbatch.observability import logger, metrics, tracer
from pixelbatch.services.webhooks import Attempt, DeliveryFailed

container = build_container()
require_settings(container.settings, "webhooks_table", "webhook_queue_url")


def deliver(record: dict[str, Any]) -> str:
    return container.deliveries.deliver(Attempt(
        body=record["body"],
        receive_count=int(record["attributes"]["ApproximateReceiveCount"]),
        receipt_handle=record["receiptHandle"],
    ))


def delivered(record: dict[str, Any]) -> bool:
    """A receiver that is down is an expected answer, not a function error: the message is
    reported and comes back when its backoff ends; the invocation itself succeeds."""
    try:
        deliver(record)
    except DeliveryFailed:
        return False  # the service has logged it
    except Exception:
        logger.exception("webhook message not delivered", message_id=record.get("messageId"))
        return False
    return True


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    failures = [{"itemIdentifier": record["messageId"]}
                for record in event["Records"] if not delivered(record)]
    return {"batchItemFailures": failures}
