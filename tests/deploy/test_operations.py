"""What an operator relies on in template.yaml, read from the template itself: the money is
protected, everything that can fail is alarmed, logs are kept for a bounded time, deployments
roll out gradually, and records expire with their objects."""

from __future__ import annotations

from typing import Any, Final

import pytest

from tests.deploy.cfn_yaml import load, resources_of_type
from tests.deploy.tooling import TEMPLATE

MONEY_TABLES: Final = ("AccountsTable", "LedgerTable", "TasksTable")
# The functions behind the API and the state machine: they deploy gradually.
GRADUAL: Final = ("TasksApiFunction", "AccountApiFunction", "DocsApiFunction",
                  "StartBatchFunction", "ProcessItemFunction", "FinalizeFunction")
TEMPLATE_DATA: Final = load(TEMPLATE)
RESOURCES: Final = TEMPLATE_DATA["Resources"]
FUNCTIONS: Final = resources_of_type(TEMPLATE_DATA, "AWS::Serverless::Function")
ALARMS: Final = resources_of_type(TEMPLATE_DATA, "AWS::CloudWatch::Alarm")


def _props(logical_id: str) -> dict[str, Any]:
    properties: dict[str, Any] = RESOURCES[logical_id]["Properties"]
    return properties


def _alarm_on(namespace: str, metric: str) -> list[dict[str, Any]]:
    return [alarm["Properties"] for alarm in ALARMS.values()
            if alarm["Properties"].get("Namespace") == namespace
            and alarm["Properties"].get("MetricName") == metric]


@pytest.mark.parametrize("table", MONEY_TABLES)
def test_money_tables_survive_stack_deletion_and_replacement(table: str) -> None:
    resource = RESOURCES[table]
    assert resource["DeletionPolicy"] == resource["UpdateReplacePolicy"] == "Retain"
    assert resource["Properties"]["DeletionProtectionEnabled"] is True
    assert resource["Properties"]["PointInTimeRecoverySpecification"] == {
        "PointInTimeRecoveryEnabled": True}


def test_the_user_pool_is_protected() -> None:
    assert RESOURCES["UserPool"]["DeletionPolicy"] == "Retain"
    assert _props("UserPool")["DeletionProtection"] == "ACTIVE"


def test_every_bucket_refuses_plain_http() -> None:
    policies = resources_of_type(TEMPLATE_DATA, "AWS::S3::BucketPolicy").values()
    protected = set()
    for policy in policies:
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if (statement["Effect"] == "Deny"
                    and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}):
                protected.add(policy["Properties"]["Bucket"]["Ref"])
    assert protected == set(resources_of_type(TEMPLATE_DATA, "AWS::S3::Bucket"))


def test_tasks_expire_with_their_outputs_and_the_ledger_never_does() -> None:
    outputs_rule = _props("OutputsBucket")["LifecycleConfiguration"]["Rules"][0]
    uploads_rule = _props("UploadsBucket")["LifecycleConfiguration"]["Rules"][0]
    assert uploads_rule["ExpirationInDays"] == 7
    assert outputs_rule["ExpirationInDays"] == {"Ref": "OutputRetentionDays"}
    assert TEMPLATE_DATA["Parameters"]["OutputRetentionDays"]["Default"] == 30
    assert _props("TasksTable")["TimeToLiveSpecification"] == {
        "AttributeName": "expires_at", "Enabled": True}
    tasks_env = _props("TasksApiFunction")["Environment"]["Variables"]
    assert tasks_env["TASK_RETENTION_DAYS"] == {"Ref": "OutputRetentionDays"}
    assert "TimeToLiveSpecification" not in _props("LedgerTable")


def test_no_image_host_is_allowed_by_default() -> None:
    assert TEMPLATE_DATA["Parameters"]["ImageUrlAllowlist"]["Default"] == ""


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_every_function_logs_to_a_group_with_retention_and_is_alarmed(function: str) -> None:
    group = _props(function)["LoggingConfig"]["LogGroup"]["Ref"]
    assert RESOURCES[group]["Type"] == "AWS::Logs::LogGroup"
    assert _props(group)["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    for metric in ("Errors", "Throttles"):
        watched = [alarm["Dimensions"] for alarm in _alarm_on("AWS/Lambda", metric)]
        assert [{"Name": "FunctionName", "Value": {"Ref": function}}] in watched, metric


def test_every_log_group_has_a_retention() -> None:
    groups = resources_of_type(TEMPLATE_DATA, "AWS::Logs::LogGroup")
    assert groups and all("RetentionInDays" in group["Properties"] for group in groups.values())


@pytest.mark.parametrize("function", GRADUAL)
def test_api_and_batch_functions_deploy_gradually_with_alarm_rollback(function: str) -> None:
    props = _props(function)
    assert props["AutoPublishAlias"]
    preference = props["DeploymentPreference"]
    assert preference["Type"] == {"Ref": "DeploymentStrategy"}
    rollback = {alarm["Ref"] for alarm in preference["Alarms"]}
    own_errors = [name for name in rollback
                  if _props(name).get("MetricName") == "Errors"
                  and _props(name)["Dimensions"][0]["Value"] == {"Ref": function}]
    assert own_errors, f"{function} is not rolled back by its own errors alarm"
    assert TEMPLATE_DATA["Parameters"]["DeploymentStrategy"]["Default"] != "AllAtOnce"


def test_the_state_machine_invokes_the_aliases_and_logs_errors_without_data() -> None:
    props = _props("BatchStateMachine")
    for key, value in props["DefinitionSubstitutions"].items():
        assert value["Ref"].endswith(".Alias") or key == "Partition", key
    assert props["Logging"]["Level"] == "ERROR"
    assert props["Logging"]["IncludeExecutionData"] is False
    for metric in ("ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"):
        assert _alarm_on("AWS/States", metric), metric


def test_the_api_is_throttled_access_logged_and_alarmed() -> None:
    props = _props("HttpApi")
    assert props["DefaultRouteSettings"] == {
        "ThrottlingBurstLimit": {"Ref": "ApiThrottleBurstLimit"},
        "ThrottlingRateLimit": {"Ref": "ApiThrottleRateLimit"},
    }
    assert props["AccessLogSettings"]["DestinationArn"] == {
        "Fn::GetAtt": ["ApiAccessLogs", "Arn"]}
    assert _alarm_on("AWS/ApiGateway", "Latency")[0]["ExtendedStatistic"] == "p99"
    rate = ALARMS["ApiServerErrorRateAlarm"]["Properties"]["Metrics"]
    assert {m["MetricStat"]["Metric"]["MetricName"] for m in rate if "MetricStat" in m} == {
        "5xx", "Count"}


def test_product_failures_have_alarms() -> None:
    for metric in ("CompletionEventsUnpublished", "StuckItemsSettled"):
        assert _alarm_on("PixelBatch", metric), metric
    throttles = ALARMS["DynamoDbThrottlesAlarm"]["Properties"]["Metrics"]
    watched = {m["MetricStat"]["Metric"]["Dimensions"][0]["Value"]["Ref"]
               for m in throttles if "MetricStat" in m}
    assert set(MONEY_TABLES) <= watched


def test_every_alarm_notifies_the_topic() -> None:
    for logical_id, alarm in ALARMS.items():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}], logical_id
    subscription = _props("AlarmEmailSubscription")
    assert subscription["Endpoint"] == {"Ref": "AlarmEmail"}


def test_scheduled_and_async_invocations_have_a_failure_destination() -> None:
    props = _props("ReconcilerFunction")
    queue = {"Fn::GetAtt": ["AsyncFailuresQueue", "Arn"]}
    assert props["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]["Destination"] == queue
    for event in props["Events"].values():
        assert event["Properties"]["DeadLetterConfig"] == {"Arn": queue}


def test_signup_opens_accounts_from_the_user_pool() -> None:
    props = _props("AccountSignupFunction")
    [event] = props["Events"].values()
    assert event == {"Type": "Cognito", "Properties": {"UserPool": {"Ref": "UserPool"},
                                                       "Trigger": "PostConfirmation"}}
    assert props["Environment"]["Variables"]["SIGNUP_GRANT_QUOTA"] == {"Ref": "SignupGrantQuota"}
