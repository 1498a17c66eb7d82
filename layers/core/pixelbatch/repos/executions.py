"""Step Functions executions: one per task round, named so that a duplicate start is harmless."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import ClientError

from pixelbatch.models import ItemRef


def execution_name(task_id: str, round_no: int) -> str:
    return f"{task_id}-r{round_no}"


def closing_name(task_id: str, round_no: int | None = None) -> str:
    """A cancel closes its task once; a round whose start was undone is closed once per round."""
    return f"{task_id}-close" if round_no is None else f"{task_id}-r{round_no}-close"


class ExecutionStarter:
    def __init__(self, sfn: Any, *, state_machine_arn: str | None) -> None:
        self._sfn = sfn
        self._arn = state_machine_arn

    def start(self, task_id: str, round_no: int, refs: Sequence[ItemRef]) -> None:
        self._start(execution_name(task_id, round_no), task_id, round_no, refs)

    def start_closing(self, task_id: str, round_no: int, *, for_round: bool = False) -> None:
        """An execution without items, so only its Finalize does work: it tallies and zips a
        task that was settled outside its rounds (a cancel stops those; an undone start never
        ran its round). `for_round` names it after the round, so each round can have one."""
        name = closing_name(task_id, round_no if for_round else None)
        self._start(name, task_id, round_no, [])

    def _start(self, name: str, task_id: str, round_no: int, refs: Sequence[ItemRef]) -> None:
        if not self._arn:
            raise RuntimeError("STATE_MACHINE_ARN is not configured")
        payload = {
            "task_id": task_id,
            "round": round_no,
            "items": [{"index": ref.index, "attempt": ref.attempt} for ref in refs],
        }
        try:
            self._sfn.start_execution(
                stateMachineArn=self._arn, name=name, input=json.dumps(payload)
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ExecutionAlreadyExists":
                raise

    def stop(self, task_id: str, round_no: int, *, cause: str) -> None:
        """A courtesy: money is already settled in DynamoDB, and running Lambdas finish anyway."""
        if not self._arn:
            return
        arn = self._arn.replace(":stateMachine:", ":execution:") + ":" + execution_name(
            task_id, round_no
        )
        with contextlib.suppress(ClientError):
            self._sfn.stop_execution(executionArn=arn, cause=cause)
