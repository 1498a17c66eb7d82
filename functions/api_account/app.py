"""Account routes: quota with recent ledger entries, the caller's features, presigned uploads,
webhook endpoints."""

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pixelbatch.api import views
from pixelbatch.api.http import body_text, create_app, current_user, ok, query_int
from pixelbatch.container import build_container, require_settings
from pixelbatch.observability import logger, metrics, tracer

app = create_app()
container = build_container()
require_settings(container.settings, "webhooks_table")


@app.get("/api/quota")
def get_quota() -> Response:
    user_id = current_user(app)
    limit = query_int(app, "limit", default=20, low=1, high=100)
    cursor = app.current_event.get_query_string_value("cursor")
    account = container.accounts.account(user_id)
    entries, next_cursor = container.accounts.recent_ledger(user_id, limit=limit, cursor=cursor)
    return ok({
        "balance": account.quota_balance,
        "plan": account.plan,
        "ledger": [views.ledger_entry(entry) for entry in entries],
        "next_cursor": next_cursor,
    })


@app.get("/api/features")
def list_features() -> Response:
    features = container.accounts.features(current_user(app))
    return ok({"features": [views.feature(item) for item in features]})


@app.post("/api/uploads")
def create_uploads() -> Response:
    from pixelbatch.contract import UploadsBody, parse_body  # pydantic: only bodies need it

    body = parse_body(UploadsBody, body_text(app))
    uploads = container.accounts.presign_uploads(current_user(app), body)
    return ok({"uploads": [views.upload(item) for item in uploads]})


@app.post("/api/webhooks")
def create_webhook() -> Response:
    from pixelbatch.contract import WebhookBody, parse_body

    body = parse_body(WebhookBody, body_text(app))
    return ok(views.webhook_created(container.webhooks.register(current_user(app), body)))


@app.get("/api/webhooks")
def list_webhooks() -> Response:
    webhooks = container.webhooks.list(current_user(app))
    return ok({"webhooks": [views.webhook(item) for item in webhooks]})


@app.delete("/api/webhooks/<webhookId>")
def delete_webhook(webhookId: str) -> Response:
    container.webhooks.delete(current_user(app), webhookId)
    return ok({"webhook_id": webhookId, "deleted": True})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
