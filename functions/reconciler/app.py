"""Scheduled: settle batch items stuck unfinished past the deadline and finalize their tasks."""

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pixelbatch.clock import now
from pixelbatch.container import build_container
from pixelbatch.observability import logger, metrics, tracer

container = build_container()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = container.processing.reconcile(now())
    metrics.add_metric(name="StuckItemsSettled", unit=MetricUnit.Count,
                       value=report.settled_items)
    logger.info("reconciled", **asdict(report))
    return asdict(report)
