"""Integration fixtures: the real template's tables, buckets and state machine on moto (in
process), the real catalog seeded, and the real handlers invoked with API Gateway events."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from pixelbatch.seed import reset_account, seed_catalog

from devstack import dynamodb_lock
from devstack.handlers import load_handler, make_context
from devstack.iam_enforce import in_process_authorizer, install_in_process
from devstack.resources import (
    create_bucket,
    create_queues,
    create_role,
    create_state_machine,
    create_table,
)
from devstack.template import Template, load_template
from devstack.workers import LOCAL_RUNTIME_SETTINGS
from tests.support.http_events import REPO, http_event, match_route


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: Any


class Stack:
    """The system as moto holds it, driven through the real Lambda handlers."""

    def __init__(self, template: Template) -> None:
        self.template = template
        self.env = template.environment()
        self.dynamodb = boto3.resource("dynamodb")
        self.s3 = boto3.client("s3")
        self.sfn = boto3.client("stepfunctions")
        self._routes = {route.route_key: route.function_id for route in template.routes}

    def user(self, user_id: str, *, quota: int = 100, plan: str = "pro") -> str:
        reset_account(user_id, quota, plan)
        return user_id

    def call(
        self, method: str, path: str, *, user: str | None, body: Any = None,
        query: dict[str, str] | None = None, headers: dict[str, str] | None = None,
    ) -> Reply:
        route_key, params = match_route(list(self._routes), method, path)
        event = http_event(route_key, path, params, user=user, body=body, query=query,
                           headers=headers)
        result = self.invoke(self._routes[route_key], event)
        raw = result.get("body") or ""
        parsed = json.loads(raw) if raw and raw[0] in "{[" else raw
        return Reply(result["statusCode"], dict(result.get("headers") or {}), parsed)

    def invoke(self, function_id: str, event: dict[str, Any]) -> dict[str, Any]:
        function = self.template.function(function_id)
        context = make_context(function.name, function.arn, function.memory_size,
                               function.timeout)
        result: dict[str, Any] = load_handler(function_id)(event, context)
        return result

    def balance(self, user_id: str) -> int:
        row = self.dynamodb.Table(self.env["ACCOUNTS_TABLE"]).get_item(Key={"user_id": user_id})
        return int(row["Item"]["quota_balance"])

    def ledger(self, user_id: str) -> list[dict[str, Any]]:
        table = self.dynamodb.Table(self.env["LEDGER_TABLE"])
        rows: list[dict[str, Any]] = table.query(
            KeyConditionExpression="user_id = :u", ExpressionAttributeValues={":u": user_id}
        )["Items"]
        return rows

    def executions(self) -> list[dict[str, Any]]:
        machine = self.template.state_machines[0]
        found: list[dict[str, Any]] = self.sfn.list_executions(
            stateMachineArn=machine.arn
        )["executions"]
        return found


# The template trusts no image host by default; these tests play a deployment that trusts an
# image host and a CDN (their names resolve to the tests' own loopback servers).
TRUSTED_IMAGE_HOSTS = "images.unsplash.com,*.cloudfront.net"


@pytest.fixture(scope="session")
def template() -> Template:
    return load_template(REPO / "template.yaml",
                         parameter_overrides={"ImageUrlAllowlist": TRUSTED_IMAGE_HOSTS})


@pytest.fixture
def stack(template: Template, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    lambda_environment(template, monkeypatch)
    with mock_aws():
        _build(template)
        yield Stack(template)


def lambda_environment(template: Template, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the handlers see on Lambda, pointed at moto in process, with atomic DynamoDB."""
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", template.naming.region)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    for name, value in {**template.environment(), **LOCAL_RUNTIME_SETTINGS}.items():
        monkeypatch.setenv(name, value)
    dynamodb_lock.install()
    install_in_process(in_process_authorizer(template))


def _build(template: Template) -> None:
    dynamodb, s3 = boto3.client("dynamodb"), boto3.client("s3")
    for table in template.tables:
        create_table(dynamodb, table)
    for bucket in template.buckets:
        create_bucket(s3, bucket, template.naming.region)
    create_queues(boto3.client("sqs"), template.queues)
    role = create_role(boto3.client("iam"), "pixelbatch-test")
    for machine in template.state_machines:
        create_state_machine(boto3.client("stepfunctions"), machine, role)
    env = template.environment()
    seed_catalog(Path(REPO / "catalog"), env["FEATURES_TABLE"], env["PIPELINES_TABLE"])
