"""Cognito post-confirmation trigger: open the confirmed user's account with its signup grant.
Cognito may deliver the trigger more than once; the second delivery finds the account and does
nothing. The event goes back to Cognito unchanged, as the trigger contract requires."""

from typing import Any

from aws_lambda_powertools.utilities.data_classes import event_source
from aws_lambda_powertools.utilities.data_classes.cognito_user_pool_event import (
    PostConfirmationTriggerEvent,
)
from aws_lambda_powertools.utilities.typing import LambdaContext
from pixelbatch.observability import logger, metrics, tracer
from pixelbatch.signup import build_lifecycle, on_confirmed

lifecycle = build_lifecycle()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_source(data_class=PostConfirmationTriggerEvent)
def lambda_handler(event: PostConfirmationTriggerEvent, context: LambdaContext) -> dict[str, Any]:
    on_confirmed(lifecycle, event.trigger_source, event.request.user_attributes)
    return event.raw_event
