"""EventBridge schedules locally: ``rate(...)`` events of the template invoke their function.

Invocations go through moto's Lambda (``InvocationType=Event``), hence through the seam, with
the scheduled-event payload EventBridge sends. As on AWS, a rate rule first fires one period
after it is created. ``scale`` shortens every period (tests and demos: 0.01 makes 5 minutes 3 s).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from devstack.template import Naming, Schedule

__all__ = ["Scheduler", "scheduled_event"]

log = logging.getLogger("devstack.scheduler")

Invoke = Callable[[Schedule, str], None]


def scheduled_event(schedule: Schedule, naming: Naming) -> str:
    """The payload EventBridge delivers for a scheduled rule (or the event's own Input)."""
    if schedule.input is not None:
        return schedule.input
    rule = f"{naming.prefix}-{schedule.function_id}{schedule.event_id}"
    event: dict[str, Any] = {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": naming.account_id,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": naming.region,
        "resources": [f"arn:aws:events:{naming.region}:{naming.account_id}:rule/{rule}"],
        "detail": {},
    }
    return json.dumps(event)


class Scheduler:
    """One thread that fires every enabled rate schedule on time, until stopped."""

    def __init__(self, schedules: Iterable[Schedule], invoke: Invoke, naming: Naming,
                 scale: float = 1.0) -> None:
        self._invoke = invoke
        self._naming = naming
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._timers: list[tuple[Schedule, float]] = []
        for schedule in schedules:
            period = schedule.interval_seconds
            if not schedule.enabled:
                continue
            if period is None:
                log.warning("%s.%s: %s is not emulated (only rate expressions are)",
                            schedule.function_id, schedule.event_id, schedule.expression)
                continue
            self._timers.append((schedule, max(period * scale, 0.05)))

    @property
    def active(self) -> list[Schedule]:
        return [schedule for schedule, _ in self._timers]

    def start(self) -> Scheduler:
        if self._timers:
            self._thread = threading.Thread(target=self._run, name="devstack-scheduler",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        started = time.monotonic()
        due = [started + period for _, period in self._timers]
        while not self._stop.is_set():
            index = min(range(len(due)), key=due.__getitem__)
            if self._stop.wait(max(0.0, due[index] - time.monotonic())):
                return
            schedule, period = self._timers[index]
            due[index] += period
            self._fire(schedule)

    def _fire(self, schedule: Schedule) -> None:
        try:
            self._invoke(schedule, scheduled_event(schedule, self._naming))
        except Exception:  # a failed run must not stop the other schedules
            log.exception("scheduled %s.%s failed", schedule.function_id, schedule.event_id)
