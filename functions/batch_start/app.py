"""State machine step: mark the task processing as its round starts."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pixelbatch.container import build_container
from pixelbatch.observability import logger, metrics, tracer
from pixelbatch.steps import RoundEvent

container = build_container()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = RoundEvent.from_event(event)
    # Per thread: the local stack runs several invocations in one process.
    logger.thread_safe_clear_keys()
    logger.thread_safe_append_keys(task_id=request.task_id, round=request.round)
    return {"status": container.processing.start_round(request.task_id).status}
