"""System overhead: a basic_clean batch end to end through the local stack against the pure
pipeline work on the same photos, divided by the parallelism the machine can give it."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

import boto3
from boto3.dynamodb.conditions import Key
from pixelbatch.imaging.pipeline import run_pipeline

from bench.context import Context
from bench.cores import CoreProbe
from bench.photos import BATCH_FEATURE, BATCH_INPUTS, Photo, batch_steps
from bench.report import Section, table
from bench.stackproc import StackProcess
from bench.stats import Summary, median, rotated, timed
from devstack.client import PixelBatchClient
from devstack.handlers import REPO_TEMPLATE
from devstack.template import load_template

MAP_CONCURRENCY = 5  # statemachine/batch.asl.json, ProcessItems.MaxConcurrency
POLL_INTERVAL_S = 0.5  # finish times come from the task row, so polling may be slow
BATCH_TIMEOUT_S = 600


def parallelism() -> int:
    return min(MAP_CONCURRENCY, os.cpu_count() or 1)


def pure_seconds(photos: list[Photo], steps: list[dict[str, Any]]) -> float:
    """run_pipeline over the photos one after another, in this process: the sum of times."""
    return sum(timed(partial(run_pipeline, p.data, steps, BATCH_INPUTS)) for p in photos)


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class BatchTiming:
    total_s: float  # request sent -> final status written
    items_s: float  # request sent -> last item written
    finalize_s: float  # last item written -> final status written (tally and ZIP)
    stack_cpu_s: float | None  # CPU time the stack process used meanwhile


class Pure:
    """The pure pipeline pass; keeps the CPU time of each run beside the wall time."""

    def __init__(self, photos: list[Photo], steps: list[dict[str, Any]]) -> None:
        self.photos, self.steps = photos, steps
        self.cpu_s: list[float] = []

    def __call__(self) -> float:
        cpu = time.process_time()
        wall = pure_seconds(self.photos, self.steps)
        self.cpu_s.append(time.process_time() - cpu)
        return wall


class Batches:
    """Runs batches on the subprocess stack; times them from the rows' own timestamps."""

    def __init__(self, stack: StackProcess, client: PixelBatchClient) -> None:
        self.stack, self.client = stack, client
        table_name = load_template(REPO_TEMPLATE).naming.table("TasksTable")
        self._rows = boto3.resource(
            "dynamodb", endpoint_url=stack.moto_url, region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        ).Table(table_name)
        self.timings: list[BatchTiming] = []

    def run(self, inputs: list[str]) -> float:
        """Seconds from POST /api/tasks/batch to the task finished; fails unless all succeeded."""
        started, cpu = time.time(), self.stack.cpu_seconds()
        task_id = self.client.create_batch(BATCH_FEATURE, inputs, **BATCH_INPUTS)
        task = self.client.wait(task_id, timeout=BATCH_TIMEOUT_S, interval=POLL_INTERVAL_S)
        if task["status"] != "success" or task["batch_success"] != len(inputs):
            raise RuntimeError(f"batch {task_id} ended {task['status']}: "
                               f"{task['batch_success']} of {len(inputs)} succeeded")
        rows = self._rows.query(KeyConditionExpression=Key("pk").eq(f"task#{task_id}"),
                                ConsistentRead=True)["Items"]
        last_item = max(_epoch(str(r["updated_at"])) for r in rows if r["sk"] != "task")
        finished, cpu_after = _epoch(str(task["updatedAt"])), self.stack.cpu_seconds()
        stack_cpu = None if cpu is None or cpu_after is None else cpu_after - cpu
        self.timings.append(BatchTiming(finished - started, last_item - started,
                                        finished - last_item, stack_cpu))
        return finished - started


def _method(photos: int, warmup: int) -> str:
    return (
        f"End to end: {photos} photos uploaded once through presigned PUTs, then per repeat "
        "`POST /api/tasks/batch` (basic_clean, brightness 10, contrast 5) on the local stack "
        "(`python -m devstack` in a subprocess), timed from the request to the moment "
        "finalize wrote the final status (the task row's `updated_at`; polling every "
        f"{POLL_INTERVAL_S} s only detects it); the last item row's `updated_at` splits it "
        "into the items phase and finalize (tally and ZIP). It includes the charge "
        "transaction, Step Functions, every item's S3 fetch and put and DynamoDB "
        "transitions, and the ZIP. Pure: `run_pipeline` over the same photos one after "
        "another in the bench process. The usable parallelism is min(MaxConcurrency "
        f"{MAP_CONCURRENCY}, {os.cpu_count()} cores) = {parallelism()}. The cores the machine "
        "gave: the same JPEG decodes timed in this process alone and split over "
        f"{parallelism()} worker processes (1 = another tenant took the other cores). Stack "
        "CPU: user plus system time of the stack process during the batch (/proc), against "
        "the pure pass's CPU time: the plumbing's CPU cost, which does not depend on how "
        "many cores were free. Pure pass, batch and core probe run in turn, forward then "
        f"backward, after an unmeasured {warmup}-photo batch that starts the worker "
        "environments. The local stack runs moto, Step Functions, the gateway and every "
        "Lambda in one Python process on the same cores as the pipelines, so its plumbing "
        "competes with the pixels for CPU; on AWS it would not."
    )


def _rows(batches: Batches, pure: Pure, walls: list[float], cores: list[float]
          ) -> list[tuple[object, ...]]:
    p = parallelism()
    rows: list[tuple[object, ...]] = []
    for i, (t, wall, cpu, given) in enumerate(
        zip(batches.timings, walls, pure.cpu_s, cores, strict=True)
    ):
        stack_cpu = "n/a" if t.stack_cpu_s is None else f"{t.stack_cpu_s / cpu:.2f}"
        rows.append((i + 1, f"{t.total_s:.1f}", f"{t.items_s:.1f}", f"{t.finalize_s:.1f}",
                     f"{wall:.1f}", f"{t.total_s / (wall / p):.2f}", f"{given:.2f}",
                     f"{t.total_s / (wall / given):.2f}", stack_cpu))
    return rows


def run(ctx: Context) -> Section:
    plan, photos, p = ctx.plan, ctx.photos(), parallelism()
    stack = ctx.stack()
    batches, pure = Batches(stack, stack.new_client()), Pure(photos, batch_steps())
    uploads = batches.client.upload([(p.name, p.data) for p in photos])
    inputs = [upload.input_url for upload in uploads]
    batches.run(inputs[: plan.warmup_images])  # starts the worker environments
    batches.timings.clear()
    with CoreProbe(p, photos[0].data) as probe:
        walls, _, cores = rotated([pure, partial(batches.run, inputs), probe.measure],
                                  plan.overhead_repeats)
    timings = batches.timings
    ratios = Summary.of([t.total_s / (w / p) for t, w in zip(timings, walls, strict=True)])
    at_given = Summary.of([t.total_s / (w / g) for t, w, g in zip(timings, walls, cores,
                                                                    strict=True)])
    cpu = [t.stack_cpu_s / c for t, c in zip(timings, pure.cpu_s, strict=True)
           if t.stack_cpu_s is not None]
    headers = ["Repeat", "end to end s", "items s", "finalize s", "pure s",
               f"ratio (p = {p})", "cores given", "ratio at cores given", "stack CPU / pure CPU"]
    finalize_share = median([t.finalize_s / t.total_s for t in timings])
    notes = [f"With the cores the machine gave: {at_given.fmt()}.",
             f"Finalize (tally and ZIP) takes {finalize_share:.0%} of the end-to-end time."]
    if cpu:
        notes.append(f"Stack CPU / pure CPU: {Summary.of(cpu).fmt()}.")
    body = "\n\n".join([
        table(headers, _rows(batches, pure, walls, cores)),
        " ".join(notes),
        _method(len(photos), plan.warmup_images),
    ])
    headline = (f"end to end / (pure / {p}) = {ratios.fmt()} for {len(photos)} photos; "
                f"at the cores the machine gave: {at_given.median:.2f}")
    if cpu:
        headline += f"; stack CPU / pure CPU = {median(cpu):.2f}"
    return Section("overhead", "System overhead", headline, body)
