"""Let a state machine run more than once under moto 5.2.1's Step Functions interpreter.

``StepFunctionsParserBackend.start_execution`` snapshots the state machine with
``copy.deepcopy``. Once it has run, its ``executions`` list holds live workers (threads, RLocks)
and the copy fails: every StartExecution after the first answers 500 (getmoto/moto#10077, fixed
upstream by #10093). The snapshot only needs the definition, so the copy leaves executions out,
as the upstream fix does. Drop this module once the pinned moto contains that fix.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

from moto.stepfunctions.models import StateMachineInstance

__all__ = ["install", "installed", "uninstall"]

_lock = threading.Lock()
_installed = False


def _deepcopy_without_executions(self: StateMachineInstance, memo: dict[int, Any]) -> Any:
    memo[id(self.executions)] = []  # the clone starts with no executions of its own
    clone = object.__new__(type(self))
    memo[id(self)] = clone
    for name, value in vars(self).items():
        setattr(clone, name, copy.deepcopy(value, memo))
    return clone


def install() -> None:
    global _installed
    with _lock:
        if "__deepcopy__" in vars(StateMachineInstance) and not _installed:
            raise RuntimeError("moto's StateMachineInstance has its own __deepcopy__ now: "
                               "check whether devstack.sfn_fix is still needed")
        StateMachineInstance.__deepcopy__ = _deepcopy_without_executions  # type: ignore[attr-defined]
        _installed = True


def uninstall() -> None:
    global _installed
    with _lock:
        if _installed:
            del StateMachineInstance.__deepcopy__  # type: ignore[attr-defined]
            _installed = False


def installed() -> bool:
    return _installed
