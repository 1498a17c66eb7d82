"""Public routes (no token): the OpenAPI document, its Swagger UI page and the web console, all
on the API's own origin."""

from __future__ import annotations

import json
import os
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pixelbatch.api import web
from pixelbatch.api.http import JSON, create_app
from pixelbatch.aws import AwsClients
from pixelbatch.errors import NotFound
from pixelbatch.observability import logger, metrics, tracer
from pixelbatch.settings import Settings

HERE = Path(__file__).parent
DEFAULT_STAGE = "$default"
NO_STORE = {"Cache-Control": "no-store"}

settings = Settings.from_env()
CONSOLE_CONFIG = web.console_config(os.environ)


# Each page's files, its policy and the OpenAPI document are made by the first request that
# needs them: a cold start serving the console does not read Swagger UI's bundle, and one
# serving the docs does not make an S3 client.
@cache
def docs_files() -> dict[str, web.Asset]:
    return {
        **web.load_assets(web.SWAGGER_UI_DIR, web.SWAGGER_UI_FILES),
        **web.load_assets(HERE / "docs"),
    }


@cache
def console_files() -> dict[str, web.Asset]:
    return web.load_assets(HERE / "console")


@cache
def console_policy() -> str:
    return web.console_policy([
        *web.storage_origins(AwsClients().s3, [settings.uploads_bucket, settings.outputs_bucket]),
        *web.config_origins(CONSOLE_CONFIG),
    ])


app = create_app()


@app.get("/api/openapi.json")
def openapi_json() -> Response:
    body = document_json(server_url(app.current_event.request_context.stage))
    return Response(200, JSON, body, headers={"X-Content-Type-Options": "nosniff"})


@app.get("/api/docs")
def docs_page() -> Response:
    return _found(web.serve(docs_files().get("index.html"), web.DOCS_POLICY, cache=False))


@app.get("/api/docs/<name>")
def docs_file(name: str) -> Response:
    return _found(web.serve(docs_files().get(name), web.DOCS_POLICY))


@app.get("/")
def console_page() -> Response:
    return _found(web.serve(console_files().get("index.html"), console_policy(), cache=False))


@app.get("/console/<name>")
def console_file(name: str) -> Response:
    if name == "config.json":
        return Response(200, JSON, json.dumps(CONSOLE_CONFIG), headers=NO_STORE)
    return _found(web.serve(console_files().get(name), console_policy()))


def _found(response: Response | None) -> Response:
    if response is None:
        raise NotFound()
    return response


def server_url(stage: str | None) -> str:
    """Behind a named stage every path starts with /<stage>; the server URL stays relative."""
    return "/" if not stage or stage == DEFAULT_STAGE else f"/{stage}"


@lru_cache(maxsize=4)
def document_json(server: str) -> str:
    from pixelbatch.api.openapi import build_document  # the contract's models come with it

    return json.dumps(build_document(server), ensure_ascii=False, separators=(",", ":"))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
