"""The operator's commands, run as an operator runs them (`make seed-aws`, `python -m
pixelbatch.admin`), in their own processes, against the local stack's tables: boto3 reaches
them through AWS_ENDPOINT_URL exactly as it reaches AWS with real credentials."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws
from pixelbatch.seed import main as seed_main
from pixelbatch.stack_outputs import StackOutputsMissing, stack_variables

from devstack.stack import LocalStack, StackConfig
from tests.support.http_events import REPO

CATALOG = REPO / "catalog"


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    # An empty stack: nothing seeded, so what the command writes is all there is.
    with LocalStack(StackConfig(moto_port=0, seed=False, schedule_scale=None)) as started:
        yield started


def operator_env(stack: LocalStack) -> dict[str, str]:
    """An operator's shell: credentials and region, no table names, no PYTHONPATH."""
    env = {key: value for key, value in os.environ.items()
           if not key.endswith("_TABLE") and key not in ("PYTHONPATH", "AWS_PROFILE")}
    env.update({"AWS_ENDPOINT_URL": stack.endpoint_url, "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION":
                stack.template.naming.region})
    return env


def table_name(stack: LocalStack, variable: str) -> str:
    return stack.template.environment()[variable]


def scan_ids(stack: LocalStack, variable: str, key: str) -> set[str]:
    table = boto3.resource("dynamodb", endpoint_url=stack.endpoint_url).Table(
        table_name(stack, variable))
    return {str(row[key]) for row in table.scan()["Items"]}


def test_make_seed_aws_loads_the_catalog_into_the_stack_tables(stack: LocalStack) -> None:
    assert scan_ids(stack, "FEATURES_TABLE", "feature_id") == set()
    ran = subprocess.run(
        ["make", "--no-print-directory", "seed-aws",
         f"FEATURES_TABLE={table_name(stack, 'FEATURES_TABLE')}",
         f"PIPELINES_TABLE={table_name(stack, 'PIPELINES_TABLE')}"],
        cwd=REPO, env=operator_env(stack), capture_output=True, text=True, timeout=300,
        check=False,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    features = {row["feature_id"] for row in json.loads((CATALOG / "features.json").read_text())}
    pipelines = {row["pipeline_id"] for row in json.loads((CATALOG / "pipelines.json").read_text())}
    assert scan_ids(stack, "FEATURES_TABLE", "feature_id") == features
    assert scan_ids(stack, "PIPELINES_TABLE", "pipeline_id") == pipelines


def admin(stack: LocalStack, *argv: str) -> subprocess.CompletedProcess[str]:
    tables = ["--accounts-table", table_name(stack, "ACCOUNTS_TABLE"),
              "--ledger-table", table_name(stack, "LEDGER_TABLE")]
    env = operator_env(stack) | {"PYTHONPATH": str(REPO / "layers" / "core")}
    return subprocess.run([sys.executable, "-m", "pixelbatch.admin", *tables, *argv],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
                          check=False)


def test_the_admin_cli_opens_grants_and_records_who_did_it(stack: LocalStack) -> None:
    opened = admin(stack, "open", "cli-user", "--grant", "5", "--reason", "trigger failed")
    assert opened.returncode == 0, opened.stderr
    assert json.loads(opened.stdout) == {"user_id": "cli-user", "created": True}
    granted = admin(stack, "grant", "cli-user", "7", "--reason", "order 9",
                    "--request-id", "order-9")
    assert granted.returncode == 0, granted.stderr
    again = admin(stack, "grant", "cli-user", "7", "--reason", "order 9",
                  "--request-id", "order-9")
    assert again.returncode == 1 and "已执行过" in again.stderr and not again.stdout
    shown = json.loads(admin(stack, "show", "cli-user").stdout)
    assert shown["balance"] == 12
    assert sorted(row["entry_id"] for row in shown["ledger"]) == [
        "grant#admin#order-9", "grant#signup"]
    ledger = boto3.resource("dynamodb", endpoint_url=stack.endpoint_url).Table(
        table_name(stack, "LEDGER_TABLE"))
    row = ledger.get_item(Key={"user_id": "cli-user", "entry_id": "grant#admin#order-9"})["Item"]
    # The actor is the caller's IAM identity, as STS reports it
    assert str(row["actor"]).startswith("arn:aws:") and row["reason"] == "order 9"


def test_the_admin_cli_says_how_to_name_the_tables(stack: LocalStack) -> None:
    env = operator_env(stack) | {"PYTHONPATH": str(REPO / "layers" / "core")}
    ran = subprocess.run([sys.executable, "-m", "pixelbatch.admin", "show", "x"], cwd=REPO,
                         env=env, capture_output=True, text=True, timeout=120, check=False)
    assert ran.returncode != 0 and "--stack" in ran.stderr


# ---------------------------------------------------------------------- --stack


STACK_OUTPUTS_TEMPLATE = {
    "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
    "Outputs": {
        "AccountsTableName": {"Value": "prod-accounts"},
        "LedgerTableName": {"Value": "prod-ledger"},
        "FeaturesTableName": {"Value": "prod-features"},
        "PipelinesTableName": {"Value": "prod-pipelines"},
    },
}


@pytest.fixture
def deployed(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A stack with the outputs template.yaml declares, on moto in process."""
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        boto3.client("cloudformation").create_stack(
            StackName="pixelbatch-prod", TemplateBody=json.dumps(STACK_OUTPUTS_TEMPLATE))
        yield "pixelbatch-prod"


def test_table_names_come_from_the_stack_outputs(deployed: str) -> None:
    assert stack_variables(deployed, ("ACCOUNTS_TABLE", "LEDGER_TABLE")) == {
        "ACCOUNTS_TABLE": "prod-accounts", "LEDGER_TABLE": "prod-ledger"}
    assert stack_variables(deployed, ("FEATURES_TABLE",)) == {"FEATURES_TABLE": "prod-features"}


def test_a_stack_without_the_outputs_is_named_in_the_error(deployed: str) -> None:
    boto3.client("cloudformation").create_stack(
        StackName="other", TemplateBody=json.dumps({"Resources": STACK_OUTPUTS_TEMPLATE[
            "Resources"]}))
    with pytest.raises(StackOutputsMissing, match="other"):
        stack_variables("other", ("ACCOUNTS_TABLE",))


def test_seed_with_a_stack_name_writes_to_its_tables(deployed: str) -> None:
    dynamodb = boto3.client("dynamodb")
    for table, key in (("prod-features", "feature_id"), ("prod-pipelines", "pipeline_id")):
        dynamodb.create_table(
            TableName=table, BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
            KeySchema=[{"AttributeName": key, "KeyType": "HASH"}])
    seed_main(["--stack", deployed])
    features = json.loads((CATALOG / "features.json").read_text())
    assert dynamodb.scan(TableName="prod-features")["Count"] == len(features)
