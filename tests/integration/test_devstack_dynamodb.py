"""The local stack's DynamoDB transactions: all or nothing, serializable, reasons in order."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import boto3
import pytest
from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.dynamodb.responses import DynamoHandler

from devstack import dynamodb_lock


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    dynamodb_lock.install()
    with mock_aws():
        resource = boto3.resource("dynamodb")
        created = resource.create_table(
            TableName="t", BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        )
        created.put_item(Item={"pk": "account", "balance": 10})
        yield created


def debit(amount: int, entry: str) -> list[dict[str, Any]]:
    return [
        {"Update": {"TableName": "t", "Key": {"pk": "account"},
                    "UpdateExpression": "SET balance = balance - :a",
                    "ConditionExpression": "balance >= :a",
                    "ExpressionAttributeValues": {":a": amount}}},
        {"Put": {"TableName": "t", "Item": {"pk": entry, "amount": amount},
                 "ConditionExpression": "attribute_not_exists(pk)"}},
    ]


def test_a_failed_condition_writes_nothing_and_reports_reasons_in_order(table: Any) -> None:
    client = table.meta.client
    client.transact_write_items(TransactItems=debit(3, "entry-1"))
    with pytest.raises(ClientError) as raised:
        client.transact_write_items(TransactItems=[
            {"Put": {"TableName": "t", "Item": {"pk": "other", "x": 1}}},
            *debit(3, "entry-1"),
        ])
    reasons = [r["Code"] for r in raised.value.response["CancellationReasons"]]
    assert reasons == ["None", "None", "ConditionalCheckFailed"]
    assert table.get_item(Key={"pk": "account"})["Item"]["balance"] == 7
    assert "Item" not in table.get_item(Key={"pk": "other"})


def test_old_item_is_returned_on_request(table: Any) -> None:
    action = debit(50, "entry-2")[0]
    action["Update"]["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
    with pytest.raises(ClientError) as raised:
        table.meta.client.transact_write_items(TransactItems=[action])
    reason = raised.value.response["CancellationReasons"][0]
    assert reason["Code"] == "ConditionalCheckFailed"
    assert reason["Item"]["balance"] == {"N": "10"}


def test_two_actions_on_one_item_are_refused(table: Any) -> None:
    with pytest.raises(ClientError) as raised:
        table.meta.client.transact_write_items(TransactItems=debit(1, "account"))
    assert raised.value.response["Error"]["Code"] == "ValidationException"
    assert table.get_item(Key={"pk": "account"})["Item"]["balance"] == 10


def test_concurrent_debits_never_overdraw(table: Any) -> None:
    client, outcomes = table.meta.client, []
    gate = threading.Barrier(8)

    def attempt(n: int) -> None:
        gate.wait()
        try:
            client.transact_write_items(TransactItems=debit(3, f"entry-{n}"))
            outcomes.append("ok")
        except ClientError:
            outcomes.append("refused")

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["ok"] * 3 + ["refused"] * 5
    assert table.get_item(Key={"pk": "account"})["Item"]["balance"] == 1


@pytest.fixture
def items_table(table: Any) -> Any:
    created = table.meta.client.create_table(
        TableName="items", BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                   {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "N"},
                              {"AttributeName": "state", "AttributeType": "S"}],
        GlobalSecondaryIndexes=[{"IndexName": "by_state",
                                 "KeySchema": [{"AttributeName": "state", "KeyType": "HASH"}],
                                 "Projection": {"ProjectionType": "ALL"}}],
    )
    resource = boto3.resource("dynamodb").Table(created["TableDescription"]["TableName"])
    with resource.batch_writer() as writer:
        for task in ("a", "b", "c"):
            for n in (3, 1, 2, 10):
                writer.put_item(Item={"pk": task, "sk": n, "state": f"{task}{n % 2}"})
    return resource


def test_a_query_reads_its_own_partition_in_key_order(items_table: Any) -> None:
    def keys(**query: Any) -> list[tuple[str, int]]:
        reply = items_table.query(KeyConditionExpression=Key("pk").eq("b"), **query)
        return [(item["pk"], int(item["sk"])) for item in reply["Items"]]

    assert keys() == [("b", 1), ("b", 2), ("b", 3), ("b", 10)]
    assert keys(ScanIndexForward=False) == [("b", 10), ("b", 3), ("b", 2), ("b", 1)]
    first = items_table.query(KeyConditionExpression=Key("pk").eq("b"), Limit=3)
    assert keys(ExclusiveStartKey=first["LastEvaluatedKey"]) == [("b", 10)]
    assert keys(FilterExpression=Attr("state").eq("b1")) == [("b", 1), ("b", 3)]
    assert items_table.query(KeyConditionExpression=Key("pk").eq("z"))["Items"] == []


def test_an_index_query_still_reads_across_partitions(items_table: Any) -> None:
    reply = items_table.query(IndexName="by_state", KeyConditionExpression=Key("state").eq("c0"))
    assert sorted(int(item["sk"]) for item in reply["Items"]) == [2, 10]
    assert {item["pk"] for item in reply["Items"]} == {"c"}


def test_item_replies_are_what_moto_s_own_encoder_writes(
        table: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    compared: set[str] = set()

    def both(self: DynamoHandler, action_result: Any) -> Any:
        ours = dynamodb_lock._encoded(self, action_result)
        if self._get_action() in dynamodb_lock.ITEM_OPERATIONS:
            theirs = dynamodb_lock._ORIGINALS["serialized"](self, action_result)
            assert json.loads(ours[2]) == json.loads(theirs[2]), self._get_action()
            compared.add(self._get_action())
        return ours

    monkeypatch.setattr(DynamoHandler, "serialized", both)
    client, key = table.meta.client, {"pk": "all-types"}
    item = {**key, "n": Decimal("1.5"), "b": b"\x00\xff", "t": True, "z": None, "ss": {"a", "b"},
            "ns": {Decimal(1), Decimal(2)}, "bs": {b"a"}, "m": {"l": ["y", Decimal(2), b"\x01"]}}
    table.put_item(Item=item, ReturnConsumedCapacity="TOTAL")
    assert table.get_item(Key=key, ReturnConsumedCapacity="TOTAL")["Item"]["b"].value == b"\x00\xff"
    table.query(KeyConditionExpression=Key("pk").eq("all-types"), ReturnConsumedCapacity="TOTAL")
    table.scan()
    table.update_item(Key=key, UpdateExpression="SET n = n + :one",
                      ExpressionAttributeValues={":one": 1}, ReturnValues="ALL_NEW")
    client.transact_write_items(TransactItems=debit(1, "entry-3"))
    client.transact_get_items(TransactItems=[{"Get": {"TableName": "t", "Key": key}}])
    client.batch_get_item(RequestItems={"t": {"Keys": [key]}})
    client.batch_write_item(RequestItems={"t": [{"PutRequest": {"Item": {"pk": "other"}}}]})
    assert "ConsumedCapacityUnits" not in table.delete_item(Key=key, ReturnValues="ALL_OLD")
    assert compared == dynamodb_lock.ITEM_OPERATIONS
