"""What a DynamoDB request costs in on-demand request units, from the item before and after it.

A write costs one write request unit per started KB of the larger of the item's old and new
size, twice that inside a transaction (prepare and commit). Every secondary index the write
touches costs its own units on the index entry's size (projected attributes and keys): one
unit per KB when an entry appears, disappears or changes, two writes (delete and put) when
the index key itself changes. Index writes are taken as charged once, transactional or not
(AWS documents the doubling for the table's own item writes). A read
costs one read unit per started 4 KB of what it read, half of that when eventually
consistent; a Query sums the items it read before rounding.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from devstack.template import Table

WRITE_BLOCK = 1024
READ_BLOCK = 4096

# attribute name -> (bytes of name and value, value comparable with ==)
Image = Mapping[str, tuple[int, object]]


@dataclass(frozen=True)
class IndexSpec:
    name: str
    keys: tuple[str, ...]
    projection: str  # ALL, KEYS_ONLY or INCLUDE
    included: tuple[str, ...] = ()


@dataclass(frozen=True)
class TableSpec:
    name: str
    keys: tuple[str, ...]
    key_types: Mapping[str, str]
    indexes: tuple[IndexSpec, ...]

    @classmethod
    def of(cls, table: Table) -> TableSpec:
        types = {a["AttributeName"]: a["AttributeType"] for a in table.attribute_definitions}
        indexes = [
            IndexSpec(
                index["IndexName"],
                tuple(k["AttributeName"] for k in index["KeySchema"]),
                index["Projection"]["ProjectionType"],
                tuple(index["Projection"].get("NonKeyAttributes", ())),
            )
            for index in (*table.global_secondary_indexes, *table.local_secondary_indexes)
        ]
        keys = tuple(k["AttributeName"] for k in table.key_schema)
        return cls(table.name, keys, types, tuple(indexes))

    def index(self, name: str) -> IndexSpec:
        return next(index for index in self.indexes if index.name == name)


@dataclass(frozen=True)
class Units:
    """Request units charged to one table or index."""

    target: str  # "Table" or "Table/index"
    write: float = 0.0
    read: float = 0.0


def size(image: Image | None) -> int:
    return sum(bytes_ for bytes_, _ in image.values()) if image else 0


def _blocks(bytes_: int, block: int) -> int:
    return max(1, math.ceil(bytes_ / block))


def projected(table: TableSpec, index: IndexSpec, image: Image | None) -> Image | None:
    """The index entry of an item, or None when the item lacks an index key (sparse)."""
    if image is None or any(key not in image for key in index.keys):
        return None
    if index.projection == "ALL":
        return image
    wanted = {*table.keys, *index.keys, *index.included}
    return {name: value for name, value in image.items() if name in wanted}


def _index_writes(table: TableSpec, index: IndexSpec, before: Image | None,
                  after: Image | None) -> int:
    old, new = projected(table, index, before), projected(table, index, after)
    if old is None and new is None:
        return 0
    if old is None or new is None:
        return _blocks(size(old or new), WRITE_BLOCK)
    if any(old[key][1] != new[key][1] for key in index.keys):
        return _blocks(size(old), WRITE_BLOCK) + _blocks(size(new), WRITE_BLOCK)
    if old == new:
        return 0
    return _blocks(max(size(old), size(new)), WRITE_BLOCK)


def write_units(table: TableSpec, before: Image | None, after: Image | None, *,
                transactional: bool) -> list[Units]:
    base = _blocks(max(size(before), size(after)), WRITE_BLOCK) * (2 if transactional else 1)
    charged = [Units(table.name, write=base)]
    for index in table.indexes:
        writes = _index_writes(table, index, before, after)
        if writes:
            charged.append(Units(f"{table.name}/{index.name}", write=writes))
    return charged


def read_units(target: str, sizes: Sequence[int], *, consistent: bool) -> Units:
    units = _blocks(sum(sizes), READ_BLOCK) * (1.0 if consistent else 0.5)
    return Units(target, read=units)


def total(units: Iterable[Units]) -> tuple[float, float]:
    charged = list(units)
    return sum(u.write for u in charged), sum(u.read for u in charged)
