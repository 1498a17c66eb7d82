"""Record the AWS calls a thread makes while it carries a tag, with DynamoDB request units.

Installed around a real batch on an in-process local stack: every botocore call goes through
``BaseClient._make_api_call``; calls from threads without a tag (the bench, moto itself) pass
untouched. Item sizes come from moto's in-process DynamoDB backend, read directly (no request,
so nothing extra is counted), before and after each write.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from botocore.client import BaseClient
from moto.dynamodb.models import dynamodb_backends
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.utilities import bytesize

from bench.capacity import (
    READ_BLOCK,
    Image,
    TableSpec,
    Units,
    projected,
    read_units,
    size,
    write_units,
)

_thread = threading.local()

ApiCall = Callable[[BaseClient, str, dict[str, Any]], Any]
WriteTarget = tuple[str, Mapping[str, Any], bool]  # table, key, transactional


@contextmanager
def tagged(tag: str) -> Iterator[None]:
    """Attribute the calls this thread makes meanwhile to ``tag``."""
    previous = getattr(_thread, "tag", None)
    _thread.tag = tag
    try:
        yield
    finally:
        _thread.tag = previous


@dataclass(frozen=True)
class Call:
    tag: str
    service: str
    operation: str
    ok: bool
    units: tuple[Units, ...] = ()
    entries: int = 1  # items a batch call carries (EventBridge PutEvents entries)


def _scalar(value: Any) -> Any:
    """A key attribute's value, whether given plain (resource) or typed ({"S": ...})."""
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in ("S", "N", "B"):
        return next(iter(value.values()))
    return value


class MotoItems:
    """Items as moto stores them, by table name and primary key."""

    def __init__(self, account_id: str, region: str, specs: Mapping[str, TableSpec]) -> None:
        self._account_id, self._region, self.specs = account_id, region, specs

    def image(self, table: str, key: Mapping[str, Any]) -> Image | None:
        spec = self.specs[table]
        typed = [self._typed(spec, name, key[name]) for name in spec.keys]
        stored = dynamodb_backends[self._account_id][self._region].get_table(table).get_item(
            typed[0], typed[1] if len(typed) > 1 else None
        )
        if stored is None:
            return None
        return {name: (bytesize(name) + value.size(), value)
                for name, value in stored.attrs.items()}

    @staticmethod
    def _typed(spec: TableSpec, name: str, value: Any) -> DynamoType:
        kind = spec.key_types[name]
        plain = _scalar(value)
        return DynamoType({kind: str(plain) if kind == "N" else plain})

    def key_of(self, table: str, item: Mapping[str, Any]) -> dict[str, Any]:
        return {name: item[name] for name in self.specs[table].keys}


def write_targets(items: MotoItems, operation: str, params: Mapping[str, Any]) -> list[WriteTarget]:
    if operation == "PutItem":
        return [(params["TableName"], items.key_of(params["TableName"], params["Item"]), False)]
    if operation in ("UpdateItem", "DeleteItem"):
        return [(params["TableName"], params["Key"], False)]
    if operation == "TransactWriteItems":
        targets: list[WriteTarget] = []
        for action in params["TransactItems"]:
            ((kind, body),) = action.items()
            if kind != "ConditionCheck":
                key = body.get("Key") or items.key_of(body["TableName"], body["Item"])
                targets.append((body["TableName"], key, True))
        return targets
    if operation == "BatchWriteItem":
        return [
            (table, request.get("DeleteRequest", {}).get("Key")
             or items.key_of(table, request["PutRequest"]["Item"]), False)
            for table, requests_ in params["RequestItems"].items() for request in requests_
        ]
    return []


def _condition_checks(items: MotoItems, params: Mapping[str, Any]) -> list[Units]:
    """A ConditionCheck in a transaction reads the item: 2 read units per 4 KB."""
    checks = []
    for action in params.get("TransactItems", []):
        body = action.get("ConditionCheck")
        if body is not None:
            found = size(items.image(body["TableName"], body["Key"]))
            checks.append(Units(body["TableName"], read=2 * max(1, -(-found // READ_BLOCK))))
    return checks


def read_charges(items: MotoItems, operation: str, params: Mapping[str, Any],
                 result: Mapping[str, Any]) -> list[Units]:
    table = params.get("TableName", "")
    consistent = bool(params.get("ConsistentRead", False))
    if operation == "GetItem":
        return [read_units(table, [size(items.image(table, params["Key"]))],
                           consistent=consistent)]
    if operation not in ("Query", "Scan"):
        return []
    spec, index_name = items.specs[table], params.get("IndexName")
    sizes = []
    for row in result.get("Items", []):
        image = items.image(table, items.key_of(table, row))
        if index_name:
            image = projected(spec, spec.index(index_name), image)
        sizes.append(size(image))
    target = f"{table}/{index_name}" if index_name else table
    return [read_units(target, sizes, consistent=consistent)]


class CallRecorder:
    """Patches botocore while installed; ``calls`` holds what tagged threads did."""

    def __init__(self, items: MotoItems) -> None:
        self.items = items
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._original: ApiCall | None = None

    def install(self) -> None:
        original: ApiCall = getattr(BaseClient, "_make_api_call")  # noqa: B009
        recorder = self

        def recorded(client: BaseClient, operation: str, params: dict[str, Any]) -> Any:
            tag = getattr(_thread, "tag", None)
            if tag is None:
                return original(client, operation, params)
            return recorder._record(tag, client, operation, params, original)

        self._original = original
        setattr(BaseClient, "_make_api_call", recorded)  # noqa: B010

    def uninstall(self) -> None:
        if self._original is not None:
            setattr(BaseClient, "_make_api_call", self._original)  # noqa: B010
            self._original = None

    def _record(self, tag: str, client: BaseClient, operation: str, params: dict[str, Any],
                original: ApiCall) -> Any:
        service = client.meta.service_model.service_name
        is_dynamodb = service == "dynamodb"
        targets = write_targets(self.items, operation, params) if is_dynamodb else []
        before = [self.items.image(table, key) for table, key, _ in targets]
        try:
            result = original(client, operation, params)
        except Exception:
            self._add(Call(tag, service, operation, ok=False))
            raise
        units: list[Units] = []
        if is_dynamodb:
            for (table, key, transactional), old in zip(targets, before, strict=True):
                new = self.items.image(table, key)
                spec = self.items.specs[table]
                units += write_units(spec, old, new, transactional=transactional)
            units += _condition_checks(self.items, params)
            units += read_charges(self.items, operation, params, result)
        entries = len(params.get("Entries", [])) if operation == "PutEvents" else 1
        self._add(Call(tag, service, operation, ok=True, units=tuple(units), entries=entries))
        return result

    def _add(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)
