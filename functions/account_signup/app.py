"""Cognito post-confirmation trigger: open the confirmed user's account with its signup grant.
Cognito may deliver the trigger more than once; the second delivery finds the account and does
nothing. The event goes back to Cognito unchanged, as the trigger contract requires."""

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pixelbatch.observability import logger, metrics, tracer
from pixelbatch.services.lifecycle import AccountLifecycle
from pixelbatch.settings import AccountSettings
from pixelbatch.signup import build_lifecycle, on_confirmed

settings = AccountSettings.from_env()


@cache
def lifecycle() -> AccountLifecycle:
    """Made by the first trigger, like every function's AWS clients."""
    return build_lifecycle(settings)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # The two fields are read from the event itself: Powertools' event data classes come as one
    # package of every event source, whose import would cost more than this whole function.
    on_confirmed(lifecycle(), event["triggerSource"], event["request"]["userAttributes"])
    return event
