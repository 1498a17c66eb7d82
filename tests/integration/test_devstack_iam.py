"""IAM as AWS enforces it: every function and the state machine act with the role that AWS's SAM
translator makes from template.yaml, and a call the role does not allow is AccessDenied."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from devstack.cfn import load_yaml
from devstack.handlers import context_for
from devstack.iam import role_for, roles_from_template
from devstack.iam_enforce import acting_as
from devstack.stack import LocalStack, StackConfig
from devstack.template import Template
from tests.integration.conftest import Stack
from tests.support.http_events import REPO, http_event

PATH_PROPERTIES = ("CodeUri", "ContentUri", "DefinitionUri")


def test_every_function_and_the_state_machine_has_a_role_of_its_own(template: Template) -> None:
    roles = roles_from_template(template)
    principals = [p for role in roles.values() for p in role.principals]
    expected = [f.logical_id for f in template.functions] + [
        m.logical_id for m in template.state_machines]
    assert sorted(principals) == sorted(expected)
    assert all(len(role.principals) == 1 for role in roles.values())


def test_the_state_machine_may_invoke_exactly_its_own_functions(template: Template) -> None:
    machine = template.state_machines[0]
    role = role_for(roles_from_template(template), machine.logical_id)
    definition = machine.definition()
    for function in template.functions:
        target = function.invoke_arn
        allowed = role.decide("lambda:InvokeFunction", target) is not None
        assert allowed == (f'"{target}"' in definition), function.logical_id
    assert role.decide("dynamodb:PutItem", template.tables[0].name) is None


def test_a_handler_in_this_process_is_held_to_its_role(stack: Stack, template: Template) -> None:
    account_api = role_for(roles_from_template(template), "AccountApiFunction")
    accounts = stack.env["ACCOUNTS_TABLE"]
    with acting_as(account_api):
        client = boto3.client("dynamodb")
        client.get_item(TableName=accounts, Key={"user_id": {"S": "nobody"}})  # allowed
        with pytest.raises(ClientError) as raised:
            client.put_item(TableName=accounts, Item={"user_id": {"S": "mallory"},
                                                      "quota_balance": {"N": "1000000"}})
    error = raised.value.response["Error"]
    assert error["Code"] == "AccessDeniedException"
    assert "is not authorized to perform: dynamodb:PutItem" in error["Message"]
    assert "Item" not in stack.dynamodb.Table(accounts).get_item(
        Key={"user_id": "mallory"}), "the denied write must not have happened"


# ---------------------------------------------------------------- a template with a grant removed


def _copy_without(tmp_path: Path, owner: str, needle: str) -> Path:
    """template.yaml with every policy of ``owner`` that mentions ``needle`` removed, written
    as JSON (which CloudFormation and SAM accept) with local paths made absolute."""
    document = load_yaml(REPO / "template.yaml")
    for resource in document["Resources"].values():
        properties = resource.get("Properties") or {}
        for name in PATH_PROPERTIES:
            if isinstance(properties.get(name), str):
                properties[name] = str(REPO / properties[name])
    properties = document["Resources"][owner]["Properties"]
    before = properties["Policies"]
    properties["Policies"] = _drop_mentions(before, needle)
    assert properties["Policies"] != before, f"{owner} has no policy mentioning {needle}"
    path = tmp_path / "template.json"
    path.write_text(json.dumps(document))
    return path


def _drop_mentions(policies: list[Any], needle: str) -> list[Any]:
    """The policies with every grant on a resource mentioning ``needle`` taken out."""
    kept: list[Any] = []
    for policy in policies:
        statements = policy.get("Statement") if isinstance(policy, dict) else None
        if not isinstance(statements, list):
            if needle not in json.dumps(policy):
                kept.append(policy)
            continue
        remaining = [narrowed for statement in statements
                     if (narrowed := _without_resources(statement, needle)) is not None]
        if remaining:
            kept.append({**policy, "Statement": remaining})
    return kept


def _without_resources(statement: dict[str, Any], needle: str) -> dict[str, Any] | None:
    resources = statement["Resource"]
    resources = resources if isinstance(resources, list) else [resources]
    left = [resource for resource in resources if needle not in json.dumps(resource)]
    return {**statement, "Resource": left} if left else None


@pytest.fixture
def stack_without(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LocalStack]:
    owner, needle = request.param
    config = StackConfig(template_path=_copy_without(tmp_path, owner, needle), moto_port=0,
                         catalog_dir=REPO / "catalog", schedule_scale=None)
    with LocalStack(config) as stack:
        yield stack


@pytest.mark.parametrize("stack_without", [("AccountApiFunction", "FeaturesTable")],
                         indirect=True)
def test_without_its_catalog_grant_the_features_route_fails_with_access_denied(
        stack_without: LocalStack) -> None:
    function = stack_without.template.function("AccountApiFunction")
    event = http_event("GET /api/features", "/api/features", {}, user="alice")
    reply = stack_without.registry.get(function.logical_id)(event, context_for(function))
    assert reply["statusCode"] == 500
    denials = stack_without.authorizer.denials
    assert denials, "the call must have been refused by IAM"
    assert {d.role.logical_id for d in denials} == {"AccountApiFunctionRole"}
    assert all(d.action.startswith("dynamodb:") and "FeaturesTable" in d.resource
               for d in denials)


@pytest.mark.parametrize("stack_without", [("BatchStateMachine", "ProcessItemFunction")],
                         indirect=True)
def test_a_state_machine_that_may_not_invoke_the_worker_fails_the_items_and_refunds(
        stack_without: LocalStack) -> None:
    stack_without.reset_account("alice", 10, "pro")
    tasks = stack_without.template.function("TasksApiFunction")
    image = f"s3://{stack_without.template.buckets[0].name}/uploads/alice/u1/photo.jpg"
    body = {"feature_id": "basic_clean", "input_images": [image], "input_data": {}}
    event = http_event("POST /api/tasks/batch", "/api/tasks/batch", {}, user="alice", body=body)
    created = stack_without.registry.get(tasks.logical_id)(event, context_for(tasks))
    assert created["statusCode"] == 200, created
    task_id = json.loads(created["body"])["data"]["task_id"]
    task = _wait_finished(stack_without, tasks, task_id)
    assert task["status"] == "failed"
    assert task["batch_items"][0]["status"] == "failed"
    assert _balance(stack_without, "alice") == 10, "the failed image must be refunded"
    denied = {(d.role.logical_id, d.action) for d in stack_without.authorizer.denials}
    assert ("BatchStateMachineRole", "lambda:InvokeFunction") in denied
    assert all("ProcessItemFunction" in d.resource for d in stack_without.authorizer.denials)


def _wait_finished(stack: LocalStack, tasks: Any, task_id: str) -> dict[str, Any]:
    path = f"/api/tasks/{task_id}"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        event = http_event("GET /api/tasks/{taskId}", path, {"taskId": task_id}, user="alice")
        reply = stack.registry.get(tasks.logical_id)(event, context_for(tasks))
        task: dict[str, Any] = json.loads(reply["body"])["data"]
        if task["status"] not in ("pending", "processing"):
            return task
        time.sleep(0.5)
    raise AssertionError(f"task {task_id} did not finish")


def _balance(stack: LocalStack, user_id: str) -> int:
    table = stack.template.environment()["ACCOUNTS_TABLE"]
    item = stack.client("dynamodb").get_item(TableName=table, Key={"user_id": {"S": user_id}})
    return int(item["Item"]["quota_balance"]["N"])
