"""Task routes: create (batch and single), read, list, download."""

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pixelbatch.api import views
from pixelbatch.api.http import (
    body_text,
    create_app,
    current_user,
    ok,
    ok_flat,
    query_bool,
    query_int,
    redirect,
)
from pixelbatch.api.idempotency import HEADER, IdempotentRoutes
from pixelbatch.container import build_container
from pixelbatch.observability import logger, metrics, tracer

app = create_app()
container = build_container()
idempotent = IdempotentRoutes(container.settings.idempotency_table)


def once(route: str, action: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    """Run a money-moving action at most once per Idempotency-Key."""
    user = current_user(app)
    return idempotent.run(
        user=user, route=route, key=app.current_event.headers.get(HEADER),
        body=body_text(app), action=lambda: action(user),
    )


@app.post("/api/tasks/batch")
@tracer.capture_method
def create_batch() -> Response:
    from pixelbatch.contract import BatchBody, parse_body  # pydantic: only bodies need it

    body = parse_body(BatchBody, body_text(app))

    def create(user: str) -> dict[str, Any]:
        task = container.tasks.create(user, body)
        metrics.add_metric(name="BatchImagesCharged", unit=MetricUnit.Count, value=task.batch_total)
        return views.created(task)

    return ok(once("POST /api/tasks/batch", create))


@app.post("/api/tasks")
@tracer.capture_method
def create_single() -> Response:
    from pixelbatch.contract import SingleBody, parse_body

    body = parse_body(SingleBody, body_text(app))

    def create(user: str) -> dict[str, Any]:
        return views.created(container.tasks.create(user, body))

    return ok(once("POST /api/tasks", create))


@app.get("/api/tasks")
def list_tasks() -> Response:
    limit = query_int(app, "limit", default=20, low=1, high=100)
    cursor = app.current_event.get_query_string_value("cursor")
    page = container.tasks.list(current_user(app), limit=limit, cursor=cursor)
    tasks = [views.task_summary(task) for task in page.tasks]
    return ok({"tasks": tasks, "next_cursor": page.next_cursor})


@app.get("/api/tasks/<taskId>")
def get_task(taskId: str) -> Response:
    return ok(views.task_details(container.tasks.details(current_user(app), taskId)))


@app.get("/api/tasks/<taskId>/download-zip")
def download_zip(taskId: str) -> Response:
    query_bool(app, "successOnly", default=True)
    return redirect(container.tasks.download_url(current_user(app), taskId))


@app.post("/api/tasks/<taskId>/retry-failed")
@tracer.capture_method
def retry_failed(taskId: str) -> Response:
    def retry(user: str) -> dict[str, Any]:
        result = container.tasks.retry_failed(user, taskId)
        return {"message": f"已重新提交{result.count}个失败项", "quota_cost": result.quota_cost}

    return ok_flat(once(f"POST /api/tasks/{taskId}/retry-failed", retry))


@app.post("/api/tasks/<taskId>/cancel")
@tracer.capture_method
def cancel(taskId: str) -> Response:
    def cancel_task(user: str) -> dict[str, Any]:
        refunded = container.tasks.cancel(user, taskId)
        metrics.add_metric(name="QuotaRefundedOnCancel", unit=MetricUnit.Count, value=refunded)
        return {"message": f"任务已取消，返还{refunded}配额", "refund_amount": refunded}

    return ok_flat(once(f"POST /api/tasks/{taskId}/cancel", cancel_task))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    idempotent.register(context)
    return app.resolve(event, context)
