"""Per-thread request state for Powertools' event handler in the local stack.

Powertools keeps the request being resolved in two class attributes,
`BaseRouter.current_event` and `BaseRouter.lambda_context`. On AWS a process serves one request
at a time, so that is fine; the local stack serves concurrent invocations as threads of one
process, where those attributes would be shared and one user's request could be answered with
another's. This makes both attributes per-thread, without changing how Powertools uses them.
"""

from __future__ import annotations

import threading
from abc import ABCMeta
from typing import Any

from aws_lambda_powertools.event_handler import api_gateway

_STATE = threading.local()
_FIELDS = ("current_event", "lambda_context")


def _per_thread(name: str) -> property:
    def read(_: Any) -> Any:
        try:
            return getattr(_STATE, name)
        except AttributeError:
            raise AttributeError(name) from None

    def write(_: Any, value: Any) -> None:
        setattr(_STATE, name, value)

    return property(read, write)


class _PerThreadRouterMeta(ABCMeta):
    """Class-level reads and writes (`BaseRouter.current_event = ...`) go through here."""

    current_event = _per_thread("current_event")
    lambda_context = _per_thread("lambda_context")


def install() -> None:
    router = api_gateway.BaseRouter
    if type(router) is _PerThreadRouterMeta:
        return
    if type(router) is not ABCMeta or "current_event" not in router.__annotations__:
        raise RuntimeError("aws_lambda_powertools BaseRouter changed shape; revisit this patch")
    for name in _FIELDS:  # instance-level reads and writes (`self.current_event`) go here
        setattr(router, name, _per_thread(name))
    router.__class__ = _PerThreadRouterMeta  # type: ignore[method-assign,assignment]


def installed() -> bool:
    return type(api_gateway.BaseRouter) is _PerThreadRouterMeta
