"""Cost model: what one real batch did, counted, then priced per 1,000 images.

The batch runs on the local stack in this process, so its handlers' AWS calls can be recorded
(:mod:`bench.awscalls`) and its execution history read from moto's Step Functions.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from bench import capacity
from bench.awscalls import Call, CallRecorder, MotoItems, tagged
from bench.capacity import TableSpec, size
from bench.context import Context
from bench.overhead import BATCH_TIMEOUT_S, POLL_INTERVAL_S
from bench.photos import BATCH_FEATURE, BATCH_INPUTS
from bench.pricing import (
    DYNAMODB_PER_RRU,
    DYNAMODB_PER_WRU,
    EVENTBRIDGE_PER_EVENT,
    LAMBDA_PER_GB_S,
    LAMBDA_PER_REQUEST,
    S3_PER_GET,
    S3_PER_PUT,
    SFN_PER_TRANSITION,
    s3_tier,
)
from bench.report import Section, table
from devstack.auth import DevTokens, dev_secret
from devstack.client import PixelBatchClient
from devstack.gateway import Gateway, GatewayServer, dev_authorizer
from devstack.handlers import REPO_TEMPLATE, LambdaHandler, load_handler
from devstack.stack import LocalStack, StackConfig
from devstack.template import Function, Template, load_template

POLL_ROUTE = "GET /api/tasks/{taskId}"
PER_IMAGES = 1000


@dataclass(frozen=True)
class Invocation:
    tag: str
    function: str  # logical id
    memory_mb: int
    started: float
    ended: float
    cpu_s: float  # the handler thread's own CPU time


class TaggedHandler:
    """A function's real handler, run with its calls tagged and its duration recorded."""

    def __init__(self, function: Function, sink: list[Invocation]) -> None:
        self._function, self._sink = function, sink
        self._handler: LambdaHandler | None = None
        self._lock = threading.Lock()

    def __call__(self, event: Any, context: Any) -> Any:
        with self._lock:  # first call: import it, as a cold start would, with the stack's env
            if self._handler is None:
                self._handler = load_handler(self._function.logical_id)
        route = event.get("routeKey") if isinstance(event, dict) else None
        tag = f"{self._function.logical_id} {route}" if route else self._function.logical_id
        started, cpu = time.perf_counter(), time.thread_time()
        try:
            with tagged(tag):
                return self._handler(event, context)
        finally:
            self._sink.append(Invocation(
                tag, self._function.logical_id, self._function.memory_size, started,
                time.perf_counter(), time.thread_time() - cpu,
            ))


@dataclass(frozen=True)
class BatchRecord:
    images: int
    calls: list[Call]
    invocations: list[Invocation]
    history: list[str]  # execution history event types
    template: Template
    row_sizes: dict[str, int]  # bytes of the task row and of its first item row


@dataclass(frozen=True)
class InProcessApi:
    stack: LocalStack
    base_url: str
    tokens: DevTokens

    def new_client(self, quota: int = 100_000, plan: str = "pro") -> PixelBatchClient:
        user_id = f"bench-cost-{time.time_ns()}"
        self.stack.reset_account(user_id, quota, plan)
        return PixelBatchClient(self.base_url, self.tokens.issue(user_id)[0])


@contextmanager
def in_process_stack(overrides: dict[str, LambdaHandler]) -> Iterator[InProcessApi]:
    """The local stack and its API gateway, both in this process."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    stack = LocalStack(StackConfig(moto_port=0, schedule_scale=None), overrides).start()
    try:
        authorizer = dev_authorizer(stack.template)
        if authorizer is None:
            raise RuntimeError("template.yaml declares no JWT authorizer")
        tokens = DevTokens(dev_secret(), authorizer)
        gateway = Gateway(stack.template, stack.registry, tokens, stack.reset_account)
        server = GatewayServer(gateway, port=0).start()
        try:
            yield InProcessApi(stack, server.base_url, tokens)
        finally:
            server.stop()
    finally:
        stack.stop()


def _quiet_handlers() -> None:
    from pixelbatch.observability import logger

    logger.setLevel(logging.WARNING)  # the handlers' per-request INFO lines
    warnings.filterwarnings("ignore", message="No application metrics to publish")


def _history(stack: LocalStack, task_id: str) -> list[str]:
    machine = stack.template.state_machines[0]
    arn = machine.arn.replace(":stateMachine:", ":execution:") + f":{task_id}-r1"
    pages = stack.client("stepfunctions").get_paginator("get_execution_history").paginate(
        executionArn=arn
    )
    return [str(event["type"]) for page in pages for event in page["events"]]


def record_batch(ctx: Context) -> BatchRecord:
    photos = ctx.photos()
    invocations: list[Invocation] = []
    template = load_template(REPO_TEMPLATE)
    overrides: dict[str, LambdaHandler] = {
        f.logical_id: TaggedHandler(f, invocations) for f in template.functions
    }
    specs = {t.name: TableSpec.of(t) for t in template.tables}
    recorder = CallRecorder(MotoItems(template.naming.account_id, template.naming.region, specs))
    recorder.install()
    try:
        with in_process_stack(overrides) as api:
            _quiet_handlers()
            client = api.new_client()
            inputs = [u.input_url for u in client.upload([(p.name, p.data) for p in photos])]
            task_id = client.create_batch(BATCH_FEATURE, inputs, **BATCH_INPUTS)
            task = client.wait(task_id, timeout=BATCH_TIMEOUT_S, interval=POLL_INTERVAL_S)
            if task["status"] != "success":
                raise RuntimeError(f"cost batch ended {task['status']}")
            client.download_zip(task_id)
            history = _history(api.stack, task_id)
            rows = _row_sizes(recorder.items, template, task_id)
    finally:
        recorder.uninstall()
    return BatchRecord(len(photos), list(recorder.calls), invocations, history, template, rows)


def _row_sizes(items: MotoItems, template: Template, task_id: str) -> dict[str, int]:
    table = template.naming.table("TasksTable")
    return {
        name: size(items.image(table, {"pk": f"task#{task_id}", "sk": sk}))
        for name, sk in (("task row", "task"), ("item row", "item#0000"))
    }


# ---- arithmetic ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LambdaUse:
    function: str
    memory_mb: int
    requests: int
    wall_s: float  # here, sharing the cores with moto and the other invocations
    cpu_s: float  # the handlers' own CPU time: what a Lambda with a core does, minus I/O waits

    @property
    def gb_s(self) -> float:
        return self.memory_mb / 1024 * self.cpu_s


def is_poll(tag: str) -> bool:
    return tag.endswith(POLL_ROUTE)


def lambda_use(record: BatchRecord, *, polls: bool) -> list[LambdaUse]:
    """Per function, over the batch's invocations (or only the status polls)."""
    by_function: dict[str, list[Invocation]] = defaultdict(list)
    for invocation in record.invocations:
        if is_poll(invocation.tag) == polls:
            by_function[invocation.function].append(invocation)
    return [
        LambdaUse(name, runs[0].memory_mb, len(runs), sum(i.ended - i.started for i in runs),
                  sum(i.cpu_s for i in runs))
        for name, runs in sorted(by_function.items())
    ]


@dataclass(frozen=True)
class Totals:
    wru: float
    rru: float
    s3: Counter[str]  # "put" / "get" requests
    transitions: int
    lambdas: list[LambdaUse]
    events: int  # EventBridge entries published

    @property
    def lambda_requests(self) -> int:
        return sum(use.requests for use in self.lambdas)

    @property
    def gb_s(self) -> float:
        return sum(use.gb_s for use in self.lambdas)

    def dollars(self) -> dict[str, float]:
        return {
            "Step Functions transitions": self.transitions * SFN_PER_TRANSITION,
            "DynamoDB writes": self.wru * DYNAMODB_PER_WRU,
            "DynamoDB reads": self.rru * DYNAMODB_PER_RRU,
            "Lambda duration": self.gb_s * LAMBDA_PER_GB_S,
            "Lambda requests": self.lambda_requests * LAMBDA_PER_REQUEST,
            "S3 PUT-tier requests": self.s3["put"] * S3_PER_PUT,
            "S3 GET-tier requests": self.s3["get"] * S3_PER_GET,
            "EventBridge events": self.events * EVENTBRIDGE_PER_EVENT,
        }


def totals(record: BatchRecord, *, polls: bool) -> Totals:
    """The batch's usage without (or only) its status polls; client S3 requests included."""
    calls = [c for c in record.calls if c.ok and is_poll(c.tag) == polls]
    units = [u for c in calls for u in c.units]
    s3: Counter[str] = Counter()
    for call in calls:
        tier = s3_tier(call.operation) if call.service == "s3" else None
        if tier:
            s3[tier] += 1
    if not polls:
        s3["put"] += record.images  # the client's presigned PUTs of the inputs
        s3["get"] += 1  # and its download of the ZIP
    transitions = 0 if polls else sum(t.endswith("StateEntered") for t in record.history)
    events = sum(c.entries for c in calls if c.service == "events")
    return Totals(sum(u.write for u in units), sum(u.read for u in units), s3, transitions,
                  lambda_use(record, polls=polls), events)


# ---- the section -------------------------------------------------------------------------

STEPS = {
    "AccountApiFunction POST /api/uploads": "presign uploads (API)",
    "TasksApiFunction POST /api/tasks/batch": "create batch (API)",
    "StartBatchFunction": "mark processing",
    "ProcessItemFunction": "process items",
    "FinalizeFunction": "finalize and ZIP",
    "TasksApiFunction GET /api/tasks/{taskId}/download-zip": "download link (API)",
}


def _per(value: float, count: int) -> str:
    return f"{value / count:.2f}"


def _by_step(record: BatchRecord) -> str:
    rows = []
    for tag in sorted({c.tag for c in record.calls if not is_poll(c.tag)},
                      key=lambda t: list(STEPS).index(t) if t in STEPS else len(STEPS)):
        calls = [c for c in record.calls if c.tag == tag and c.ok]
        wru = sum(u.write for c in calls for u in c.units)
        rru = sum(u.read for c in calls for u in c.units)
        ops = Counter(c.operation for c in calls if c.service == "dynamodb")
        other = Counter(f"{c.service} {c.operation}" for c in calls if c.service != "dynamodb")
        rows.append((STEPS.get(tag, tag), f"{wru:g}", _per(wru, record.images), f"{rru:g}",
                     ", ".join(f"{op} {n}" for op, n in sorted(ops.items())),
                     ", ".join(f"{op} {n}" for op, n in sorted(other.items()))))
    return table(["Step", "WRU", "WRU / image", "RRU", "DynamoDB calls", "other AWS calls"],
                 rows)


def _by_target(record: BatchRecord) -> str:
    writes: dict[str, float] = defaultdict(float)
    reads: dict[str, float] = defaultdict(float)
    for call in record.calls:
        if call.ok and not is_poll(call.tag):
            for units in call.units:
                writes[units.target] += units.write
                reads[units.target] += units.read
    prefix = record.template.naming.prefix + "-"
    rows = [(target.removeprefix(prefix), f"{writes[target]:g}",
             _per(writes[target], record.images), f"{reads[target]:g}")
            for target in sorted(writes, key=lambda t: -writes[t])]
    return table(["Table / index", "WRU", "WRU / image", "RRU"], rows)


def _lambdas(uses: list[LambdaUse]) -> str:
    rows = [(u.function, u.memory_mb, u.requests, f"{u.wall_s:.2f}", f"{u.cpu_s:.2f}",
             f"{u.gb_s:.2f}") for u in uses]
    return table(["Function", "MB", "invocations", "wall s here", "CPU s", "GB-s (CPU)"], rows)


def _usage(batch: Totals, images: int, expected_transitions: int) -> str:
    rows = [
        ("DynamoDB write request units", f"{batch.wru:g}", _per(batch.wru, images)),
        ("DynamoDB read request units", f"{batch.rru:g}", _per(batch.rru, images)),
        ("Step Functions state transitions", f"{batch.transitions} (ASL: {expected_transitions})",
         _per(batch.transitions, images)),
        ("Lambda requests", batch.lambda_requests, _per(batch.lambda_requests, images)),
        ("Lambda GB-s (memory x CPU time)", f"{batch.gb_s:.2f}", f"{batch.gb_s / images:.3f}"),
        ("S3 PUT-tier requests", batch.s3["put"], _per(batch.s3["put"], images)),
        ("S3 GET-tier requests", batch.s3["get"], _per(batch.s3["get"], images)),
    ]
    return table(["Usage", f"batch of {images}", "per image"], rows)


def _rows(record: BatchRecord) -> str:
    failed = sum(not call.ok for call in record.calls)
    return "Finished rows: " + ", ".join(
        f"{name} {bytes_} bytes" for name, bytes_ in record.row_sizes.items()
    ) + f" (a write is billed per started KB of the row). Failed AWS calls: {failed}."


def _prices(batch: Totals, images: int) -> tuple[str, float]:
    dollars = {name: value * PER_IMAGES / images for name, value in batch.dollars().items()}
    whole = sum(dollars.values())
    rows = [(name, f"${value:.4f}", f"{value / whole:.0%}") for name, value in dollars.items()]
    rows.append(("**total**", f"**${whole:.4f}**", "100%"))
    return table(["Per 1,000 images", "USD", "share"], rows), whole


def _method(record: BatchRecord, polls: int, poll: Totals) -> str:
    return " ".join([
        f"One basic_clean batch of {record.images} photos on the local stack run in this "
        "process (moto server, real handlers, real ASL), driven over HTTP like a client: "
        f"presigned uploads, create, polls every {POLL_INTERVAL_S} s, download link and ZIP. "
        "Every handler runs with a tag, and botocore's `_make_api_call` is wrapped to record "
        "each tagged AWS call.",
        " ".join(str(capacity.__doc__).split()),
        "Sizes are moto's (attribute name plus value bytes) of the stored item before and "
        "after each write. State transitions: the `...StateEntered` events of the "
        "execution's history in moto (the ASL expects MarkProcessing, ProcessItems, Finalize "
        "and one ProcessItem per image). Lambda duration is priced on the CPU time of each "
        "handler's thread: the work a Lambda with a core of its own does, as an arm64 core "
        "as fast as one of this machine's. It leaves out the network round trips to S3 and "
        "DynamoDB (about seven per item), so it is a lower bound; the wall time here is no "
        f"better guide, as up to five item workers, the API and moto share {os.cpu_count()} "
        "cores and one interpreter.",
        "Prices: US-East-1 list, Lambda arm64 $0.0000133334 per GB-s and $0.20 per million "
        "requests, Step Functions Standard $0.025 per 1,000 transitions, DynamoDB on-demand "
        "$0.625 per million WRU and $0.125 per million RRU, S3 $0.005 per 1,000 "
        "PUT/COPY/POST/LIST and $0.0004 per 1,000 GET and other requests (DELETE and abort "
        "free), EventBridge $1.00 per million custom events. The client's presigned PUTs and "
        "its ZIP download are counted; API Gateway "
        "($1.00 per million HTTP API requests), CloudWatch Logs, storage and data transfer "
        "are not.",
        f"Status polls are left out of the totals: the client polled {polls} times, each one "
        f"Lambda request and {poll.rru / max(polls, 1):.1f} RRU (a consistent Query of the "
        "task's rows).",
    ])


def run(ctx: Context) -> Section:
    ctx.stop_stack()  # this benchmark runs its own stack, in this process
    record = record_batch(ctx)
    batch, poll = totals(record, polls=False), totals(record, polls=True)
    polls = sum(is_poll(i.tag) for i in record.invocations)
    prices, whole = _prices(batch, record.images)
    n = record.images
    headline = (
        f"per image {batch.wru / n:.1f} WRU, {batch.rru / n:.1f} RRU, "
        f"{batch.transitions / n:.2f} state transitions, {batch.gb_s / n:.2f} Lambda GB-s: "
        f"${whole:.4f} per 1,000 images"
    )
    body = "\n\n".join([
        _usage(batch, n, 3 + n), prices,
        "Write units by step:", _by_step(record), _rows(record),
        "By table and index:", _by_target(record),
        "Lambda (polls excluded):", _lambdas(batch.lambdas),
        _method(record, polls, poll),
    ])
    return Section("cost", "Cost model", headline, body)
