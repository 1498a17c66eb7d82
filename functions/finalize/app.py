"""State machine step: tally the batch from its item rows and stream the ZIP of results."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pixelbatch.container import build_container
from pixelbatch.models import ItemRef
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
    round_items = [ItemRef(item.index, item.attempt) for item in request.items]
    return {"status": container.processing.finalize_round(request.task_id, round_items).status}
