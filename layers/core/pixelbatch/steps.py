"""Payloads the state machine sends to its Lambdas: keys and small records only.

Checked by hand rather than by pydantic models: a step function would otherwise import pydantic
for three small records, the largest part of its cold start after boto3 and Powertools."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

Action = Literal["process", "record_failure"]
ACTIONS: tuple[Action, ...] = ("process", "record_failure")


class InvalidStepEvent(ValueError):
    """The state machine sent a payload its Lambda cannot use (an ASL mistake)."""


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidStepEvent(f"{where} must be an object")
    return value


def _int(event: Mapping[str, Any], name: str, *, low: int) -> int:
    value = event.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidStepEvent(f"{name} must be an integer, not {value!r}")
    if value < low:
        raise InvalidStepEvent(f"{name} must be at least {low}, not {value}")
    return value


def _task_id(event: Mapping[str, Any]) -> str:
    value = event.get("task_id")
    if not isinstance(value, str) or not value:
        raise InvalidStepEvent(f"task_id must be a non-empty string, not {value!r}")
    return value


@dataclass(frozen=True)
class RoundItem:
    index: int
    attempt: int

    @classmethod
    def from_event(cls, event: Any) -> RoundItem:
        item = _object(event, "an item")
        return cls(index=_int(item, "index", low=0), attempt=_int(item, "attempt", low=1))


@dataclass(frozen=True)
class RoundEvent:
    task_id: str
    round: int
    items: tuple[RoundItem, ...] = ()  # the round's item attempts (Finalize only)

    @classmethod
    def from_event(cls, event: Any) -> RoundEvent:
        body = _object(event, "the event")
        items = body.get("items", ())
        if not isinstance(items, list | tuple):
            raise InvalidStepEvent("items must be a list")
        return cls(task_id=_task_id(body), round=_int(body, "round", low=1),
                   items=tuple(RoundItem.from_event(item) for item in items))


@dataclass(frozen=True)
class ItemEvent:
    task_id: str
    index: int
    attempt: int
    action: Action = "process"
    error: str | None = None

    @classmethod
    def from_event(cls, event: Any) -> ItemEvent:
        body = _object(event, "the event")
        action = body.get("action", "process")
        if action not in ACTIONS:
            raise InvalidStepEvent(f"action must be one of {', '.join(ACTIONS)}, not {action!r}")
        error = body.get("error")
        if error is not None and not isinstance(error, str):
            raise InvalidStepEvent("error must be a string")
        return cls(task_id=_task_id(body), index=_int(body, "index", low=0),
                   attempt=_int(body, "attempt", low=1), action=cast(Action, action),
                   error=error)
