"""State machine step: process one item attempt, or record why it could not be processed."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pixelbatch.container import build_container
from pixelbatch.imaging.heap import keep_freed_memory
from pixelbatch.models import ItemRef
from pixelbatch.observability import logger, metrics, tracer
from pixelbatch.steps import ItemEvent

if not keep_freed_memory():
    logger.warning("glibc refused the heap settings: each image faults in its buffers anew")
container = build_container()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = ItemEvent.from_event(event)
    # Per thread: the local stack runs several invocations in one process.
    logger.thread_safe_clear_keys()
    logger.thread_safe_append_keys(
        task_id=request.task_id, index=request.index, attempt=request.attempt
    )
    ref = ItemRef(request.index, request.attempt)
    if request.action == "record_failure":
        outcome = container.processing.record_failure(request.task_id, ref, request.error)
    else:
        outcome = container.processing.process_item(request.task_id, ref)
    metrics.add_metric(name=f"Items_{outcome.status}", unit=MetricUnit.Count, value=1)
    return {"status": outcome.status, "detail": outcome.detail}
