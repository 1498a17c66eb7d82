"""Translate template resources (CloudFormation property shapes) into moto API calls."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping
from typing import Any

from devstack.template import Bucket, Function, Queue, StateMachine, Table, TemplateError

__all__ = [
    "create_bucket",
    "create_function",
    "create_queues",
    "create_role",
    "create_state_machine",
    "create_table",
    "create_table_request",
]

_TABLE_KEYS = (
    "AttributeDefinitions",
    "KeySchema",
    "BillingMode",
    "ProvisionedThroughput",
    "TableClass",
    "DeletionProtectionEnabled",
)
_GSI_KEYS = ("IndexName", "KeySchema", "Projection", "ProvisionedThroughput", "OnDemandThroughput")
_LSI_KEYS = ("IndexName", "KeySchema", "Projection")

_TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": ["lambda.amazonaws.com", "states.amazonaws.com"]},
            "Action": "sts:AssumeRole",
        }
    ],
}


def _pick(source: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: source[key] for key in keys if key in source}


def create_table_request(table: Table) -> dict[str, Any]:
    """CreateTable arguments with the template's keys, indexes, billing, SSE and streams."""
    props = table.properties
    request: dict[str, Any] = {"TableName": table.name, **_pick(props, _TABLE_KEYS)}
    if table.global_secondary_indexes:
        request["GlobalSecondaryIndexes"] = [
            _pick(index, _GSI_KEYS) for index in table.global_secondary_indexes
        ]
    if table.local_secondary_indexes:
        request["LocalSecondaryIndexes"] = [
            _pick(index, _LSI_KEYS) for index in table.local_secondary_indexes
        ]
    sse = props.get("SSESpecification")
    if sse:  # CloudFormation says SSEEnabled, the API says Enabled
        request["SSESpecification"] = {
            "Enabled": bool(sse.get("SSEEnabled", False)),
            **_pick(sse, ("SSEType", "KMSMasterKeyId")),
        }
    stream = props.get("StreamSpecification")
    if stream:
        request["StreamSpecification"] = {"StreamEnabled": True, **stream}
    return request


def create_table(dynamodb: Any, table: Table) -> None:
    dynamodb.create_table(**create_table_request(table))
    if table.ttl_attribute:
        dynamodb.update_time_to_live(
            TableName=table.name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute},
        )
    pitr = table.properties.get("PointInTimeRecoverySpecification") or {}
    if pitr.get("PointInTimeRecoveryEnabled"):
        dynamodb.update_continuous_backups(
            TableName=table.name,
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
        )


def _cors_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    # CloudFormation and the S3 API spell three of these differently
    renamed = {"ExposedHeaders": "ExposeHeaders", "MaxAge": "MaxAgeSeconds", "Id": "ID"}
    return {renamed.get(key, key): value for key, value in rule.items()}


def _encryption_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    renamed = {"ServerSideEncryptionByDefault": "ApplyServerSideEncryptionByDefault"}
    return {renamed.get(key, key): value for key, value in rule.items()}


def create_bucket(s3: Any, bucket: Bucket, region: str) -> None:
    """The bucket plus the settings that change behaviour locally (lifecycle does not)."""
    if region == "us-east-1":
        s3.create_bucket(Bucket=bucket.name)
    else:
        s3.create_bucket(
            Bucket=bucket.name, CreateBucketConfiguration={"LocationConstraint": region}
        )
    props = bucket.properties
    if bucket.cors_rules:
        s3.put_bucket_cors(
            Bucket=bucket.name,
            CORSConfiguration={"CORSRules": [_cors_rule(rule) for rule in bucket.cors_rules]},
        )
    encryption = (props.get("BucketEncryption") or {}).get("ServerSideEncryptionConfiguration")
    if encryption:
        rules = [_encryption_rule(rule) for rule in encryption]
        s3.put_bucket_encryption(
            Bucket=bucket.name, ServerSideEncryptionConfiguration={"Rules": rules}
        )
    if props.get("PublicAccessBlockConfiguration"):
        s3.put_public_access_block(
            Bucket=bucket.name,
            PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"],
        )
    if props.get("OwnershipControls"):
        s3.put_bucket_ownership_controls(
            Bucket=bucket.name, OwnershipControls=props["OwnershipControls"]
        )


# CloudFormation's queue properties that are SQS attributes of the same name
_QUEUE_ATTRIBUTES = ("DelaySeconds", "MaximumMessageSize", "MessageRetentionPeriod",
                     "ReceiveMessageWaitTimeSeconds", "VisibilityTimeout",
                     "SqsManagedSseEnabled", "RedrivePolicy", "RedriveAllowPolicy")


def _queue_attribute(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):  # RedrivePolicy and RedriveAllowPolicy are JSON documents
        return json.dumps(value)
    return str(value)


def create_queues(sqs: Any, queues: tuple[Queue, ...]) -> None:
    """Every queue, then the redrive policies (a dead-letter queue must exist first)."""
    for queue in queues:
        created = sqs.create_queue(QueueName=queue.name)["QueueUrl"]
        if created.rpartition("/")[2] != queue.name:
            raise TemplateError(f"{queue.logical_id}: moto made {created}")
    for queue in queues:
        attributes = {key: _queue_attribute(queue.properties[key])
                      for key in _QUEUE_ATTRIBUTES if key in queue.properties}
        if attributes:
            sqs.set_queue_attributes(QueueUrl=queue.url, Attributes=attributes)


def create_role(iam: Any, name: str) -> str:
    """One role for every function and state machine: moto checks it exists, not what it allows."""
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(_TRUST_POLICY))
    return str(role["Role"]["Arn"])


def _placeholder_zip(function: Function) -> bytes:
    # moto needs a code package; the real code runs in process through the seam
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        note = f"# runs in process from {function.code_uri}\n"
        archive.writestr(function.handler_file.name, note)
    return buffer.getvalue()


def create_function(lambda_: Any, function: Function, role_arn: str) -> None:
    created = lambda_.create_function(
        FunctionName=function.name,
        Runtime=function.runtime,
        Role=role_arn,
        Handler=function.handler,
        Code={"ZipFile": _placeholder_zip(function)},
        Timeout=function.timeout,
        MemorySize=function.memory_size,
        Architectures=list(function.architectures),
        Environment={"Variables": dict(function.environment)},
    )
    _expect_arn(function.logical_id, function.arn, created["FunctionArn"])
    if function.alias:  # AutoPublishAlias: a version, and the alias that points at it
        version = lambda_.publish_version(FunctionName=function.name)["Version"]
        lambda_.create_alias(FunctionName=function.name, Name=function.alias,
                             FunctionVersion=version)


def create_state_machine(sfn: Any, machine: StateMachine, role_arn: str) -> None:
    created = sfn.create_state_machine(
        name=machine.name,
        definition=machine.definition(),
        roleArn=role_arn,
        type=machine.type,
    )
    _expect_arn(machine.logical_id, machine.arn, created["stateMachineArn"])


def _expect_arn(logical_id: str, predicted: str, actual: str) -> None:
    # environment variables and DefinitionSubstitutions were resolved with the predicted ARN
    if predicted != actual:
        raise TemplateError(f"{logical_id}: moto made {actual}, the model predicted {predicted}")
