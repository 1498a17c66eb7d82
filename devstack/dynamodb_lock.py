"""Make every emulated DynamoDB request atomic, as DynamoDB's own are, and keep transactions
cheap.

moto applies a TransactWriteItems by deep-copying each table it touches and, when a condition
fails, restoring those copies. Two concurrent requests can therefore interleave, and a failed
transaction can roll back another request's committed write; the product's money rules depend
on serializable transactions, so the local stack runs one DynamoDB operation at a time (the
parsing of requests and the encoding of replies run outside the lock). With
requests serialized, a transaction can also check every condition before writing anything and
snapshot only the items it writes, instead of copying whole tables (which made each transaction
cost O(table size): about 0.5 s at 6,000 rows).

A Query on the base table reads its own partition, as DynamoDB does: moto sorts every item
of the table to find one partition's, which made reading a task's items cost O(table size)
while holding the request lock.

The item operations' replies are encoded by walking the output shape once, with the items,
already in DynamoDB's JSON form, copied as they are: moto's generic encoder spent about 70 ms
of the emulator's one interpreter on a 50-item Query.
"""

from __future__ import annotations

import base64
import copy
import functools
import json
import threading
from collections.abc import Callable
from typing import Any

import botocore.session
from botocore import xform_name
from botocore.model import ListShape, MapShape, Shape, StructureShape
from moto.core.responses import ActionResult
from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.exceptions import (
    ConditionalCheckFailed,
    MockValidationException,
    MultipleTransactionsException,
    TooManyTransactionsException,
    TransactionCanceledException,
    TransactWriteSingleOpException,
)
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType, Item
from moto.dynamodb.models.table import Table
from moto.dynamodb.responses import DynamoHandler

_LOCK = threading.RLock()
_QUERYING = threading.local()  # the (table, hash key) of a base-table Query in progress
_ORIGINALS: dict[str, Callable[..., Any]] = {}

Reason = tuple[str | None, str | None, dict[str, Any] | None]

_SERVICE = botocore.session.get_session().get_service_model("dynamodb")
ITEM_OPERATIONS = frozenset({
    "GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan", "BatchGetItem",
    "BatchWriteItem", "TransactGetItems", "TransactWriteItems",
})


def install() -> None:
    if _ORIGINALS:
        return
    transact = DynamoDBBackend.transact_write_items
    query, all_items = Table.query, Table.all_items
    if not all(map(callable, (transact, query, all_items))):
        raise RuntimeError("moto's DynamoDB transaction or query entry point moved")
    operations = _operations()
    _ORIGINALS.update(transact_write_items=transact, query=query, all_items=all_items)
    for name, operation in operations.items():
        setattr(DynamoHandler, name, _one_at_a_time(operation))
    _ORIGINALS["serialized"] = DynamoHandler.serialized
    DynamoHandler.serialized = _encoded  # type: ignore[method-assign, assignment]
    DynamoDBBackend.transact_write_items = _transact_write_items  # type: ignore[method-assign]
    Table.query = _query_one_partition  # type: ignore[method-assign]
    Table.all_items = _all_items  # type: ignore[method-assign]


def _operations() -> dict[str, Callable[..., Any]]:
    """DynamoHandler's method for each DynamoDB operation: it parses nothing and serializes
    nothing, so the lock covers only the backend's work, not the reply's encoding."""
    names = [xform_name(operation) for operation in _SERVICE.operation_names]
    operations = {name: getattr(DynamoHandler, name) for name in names
                  if callable(getattr(DynamoHandler, name, None))}
    if not {"get_item", "query", "transact_write_items", "update_item"} <= operations.keys():
        raise RuntimeError("moto's DynamoDB operations moved")
    return operations


def _encoded(self: DynamoHandler, action_result: ActionResult) -> Any:
    """The JSON reply for an item operation's result; anything else goes to moto's encoder."""
    action, result = self._get_action(), action_result.result
    shape = _SERVICE.operation_model(action).output_shape if action in ITEM_OPERATIONS else None
    if shape is None or not isinstance(result, dict):
        return _ORIGINALS["serialized"](self, action_result)
    headers = {"Content-Type": "application/x-amz-json-1.0", **self.response_headers}
    return 200, headers, json.dumps(_plain(result, shape))


def _plain(value: Any, shape: Shape) -> Any:
    """``value`` as the shape's JSON: members it does not have dropped, blobs in base64."""
    if shape.name == "AttributeValue":
        return _attribute(value)
    if isinstance(shape, StructureShape):
        return {name: _plain(member, shape.members[name]) for name, member in value.items()
                if name in shape.members and member is not None}
    if isinstance(shape, ListShape):
        return [_plain(member, shape.member) for member in value]
    if isinstance(shape, MapShape):
        return {key: _plain(member, shape.value) for key, member in value.items()}
    return _blob(value) if isinstance(value, bytes) else value


def _attribute(value: dict[str, Any]) -> dict[str, Any]:
    (kind, inner), = value.items()
    if kind == "M":
        return {"M": {name: _attribute(member) for name, member in inner.items()}}
    if kind == "L":
        return {"L": [_attribute(member) for member in inner]}
    if kind in ("B", "BS"):
        return {kind: _blob(inner) if kind == "B" else [_blob(member) for member in inner]}
    return value


def _blob(value: bytes | str) -> str:
    return base64.b64encode(value).decode() if isinstance(value, bytes) else value


def _one_at_a_time(operation: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(operation)
    def locked(self: DynamoHandler) -> Any:
        with _LOCK:
            return operation(self)

    return locked


def installed() -> bool:
    return bool(_ORIGINALS)


def _query_one_partition(self: Table, hash_key: DynamoType | None, *args: Any,
                         **kwargs: Any) -> Any:
    """moto's Query, told which partition a base-table Query reads (see :func:`_all_items`)."""
    on_index = bool(kwargs.get("index_name") or (len(args) > 6 and args[6]))
    _QUERYING.partition = None if on_index else (self, hash_key)
    try:
        return _ORIGINALS["query"](self, hash_key, *args, **kwargs)
    finally:
        _QUERYING.partition = None


def _all_items(self: Table) -> list[Item]:
    """Every item in key order, or only the partition a base-table Query is reading."""
    querying = getattr(_QUERYING, "partition", None)
    if querying is None or querying[0] is not self:
        items: list[Item] = _ORIGINALS["all_items"](self)
        return items
    partition = self.items.get(querying[1])
    if partition is None:
        return []
    if isinstance(partition, Item):
        return [partition]
    return sorted(partition.values(), key=lambda item: item.range_key)


def _transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    """Check every action, then write; runs under the request lock, so nothing interleaves."""
    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    actions = [_parse(self, item) for item in transact_items]
    _reject_duplicates(actions)
    reasons = [_check(self, op_type, op, key) for op_type, op, key in actions]
    if any(code is not None for code, _, _ in reasons):
        raise TransactionCanceledException(reasons)
    # Copies: moto updates items in place.
    snapshot = [(op["TableName"], key, copy.deepcopy(self.get_item(op["TableName"], key)))
                for op_type, op, key in actions if op_type != "ConditionCheck"]
    try:
        for op_type, op, key in actions:
            _apply(self, op_type, op, key)
    except Exception:
        _restore(self, snapshot)
        # Let moto's own implementation produce its exact error for this rare case.
        _ORIGINALS["transact_write_items"](self, transact_items)


def _parse(self: DynamoDBBackend, item: dict[str, Any]) -> tuple[str, dict[str, Any], Any]:
    if len(item) > 1:
        raise TransactWriteSingleOpException
    op_type, op = next(iter(item.items()))
    if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
        raise MockValidationException("Unsupported transaction operation")
    if op_type != "Put":
        return op_type, op, op["Key"]
    table = self.get_table(op["TableName"])
    key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
    if table.range_key_attr is not None:
        key[table.range_key_attr] = op["Item"][table.range_key_attr]
    return op_type, op, key


def _reject_duplicates(actions: list[tuple[str, dict[str, Any], Any]]) -> None:
    seen: set[tuple[str, str]] = set()
    for _, op, key in actions:
        target = (str(op["TableName"]), str(dict(sorted(key.items()))))
        if target in seen:
            raise MultipleTransactionsException()
        seen.add(target)


def _check(self: DynamoDBBackend, op_type: str, op: dict[str, Any], key: Any) -> Reason:
    try:
        current = self.get_item(op["TableName"], key)
        condition = op.get("ConditionExpression")
        if condition is None:
            return (None, None, None)
        expression = get_filter_expression(
            condition, op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
        )
        if expression.expr(current):
            return (None, None, None)
        wants_item = op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD"
        item = current.to_json()["Attributes"] if wants_item and current else None
        return ("ConditionalCheckFailed", ConditionalCheckFailed().message, item)
    except (MultipleTransactionsException, MockValidationException):
        raise
    except Exception as error:
        return (type(error).__name__, str(error), None)


def _apply(self: DynamoDBBackend, op_type: str, op: dict[str, Any], key: Any) -> None:
    names = op.get("ExpressionAttributeNames") or {}
    values = op.get("ExpressionAttributeValues") or {}
    if op_type == "Put":
        self.put_item(op["TableName"], op["Item"], expression_attribute_names=names,
                      expression_attribute_values=values)
    elif op_type == "Delete":
        self.delete_item(op["TableName"], key)
    elif op_type == "Update":
        self.update_item(op["TableName"], key, update_expression=op["UpdateExpression"],
                         expression_attribute_names=names, expression_attribute_values=values)


def _restore(self: DynamoDBBackend, snapshot: list[tuple[str, Any, Any]]) -> None:
    for table_name, key, before in snapshot:
        if before is None:
            self.delete_item(table_name, key)
        else:
            self.put_item(table_name, before.to_json()["Attributes"])
