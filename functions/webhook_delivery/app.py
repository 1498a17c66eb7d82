"""SQS event source: sign and POST each queued webhook message. A message the receiver did not
take is reported as a batch item failure, hidden until its next attempt is due."""

from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pixelbatch.container import build_container, require_settings
from pixelbatch.observability import logger, metrics, tracer
from pixelbatch.services.webhooks import Attempt

container = build_container()
require_settings(container.settings, "webhooks_table", "webhook_queue_url")
# A receiver that is down is an expected answer, not a function error: the failed messages are
# reported and come back when their backoff ends; the invocation itself succeeds.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def deliver(record: SQSRecord) -> str:
    return container.deliveries.deliver(Attempt(
        body=record.body,
        receive_count=int(record.attributes.approximate_receive_count),
        receipt_handle=record.receipt_handle,
    ))


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    reply = process_partial_response(event=event, record_handler=deliver, processor=processor,
                                     context=context)
    return dict(reply)
