"""How much work each benchmark does: the full run, or a --quick smoke run."""

from __future__ import annotations

from dataclasses import dataclass, replace

SECTIONS = ("floor", "engine", "memory", "coldstart", "overhead", "zip", "latency", "responsive",
            "cost")
# The commit the "before" figures of the cold start are measured at: the functions and core
# layer as they were before lazy clients, deferred heavy imports and a compiled layer.
BASELINE = "6e421f8"


@dataclass(frozen=True)
class Plan:
    quick: bool
    images: int  # photos per batch (overhead, cost), for basic_clean's floor and for the ZIP
    overhead_repeats: int  # interleaved (pure, end-to-end) pairs
    warmup_images: int  # a first, unmeasured batch starts the worker environments
    floor_repeats: int  # per image, pipeline and floor alternately
    other_pipeline_images: int  # photos for each of the other catalog pipelines
    other_pipeline_repeats: int  # per photo, as floor_repeats: best of these many runs
    breakdown_images: int  # photos for basic_clean's per-stage times
    zip_repeats: int
    clients: int  # concurrent create-batch clients
    latency_rounds: int  # measured rounds of `clients` simultaneous requests
    latency_batch_size: int = 10
    coldstart_repeats: int = 5  # imports take a fifth of a second: more runs steady the medians
    memory_images: int = 3  # photos per pipeline for the Lambda memory model
    baseline: str = BASELINE

    def with_images(self, images: int | None) -> Plan:
        return self if images is None else replace(self, images=images)


FULL = Plan(
    quick=False, images=50, overhead_repeats=3, warmup_images=5, floor_repeats=2,
    other_pipeline_images=6, other_pipeline_repeats=3, breakdown_images=5, zip_repeats=5,
    clients=20, latency_rounds=3,
)
QUICK = Plan(
    quick=True, images=3, overhead_repeats=1, warmup_images=1, floor_repeats=1,
    other_pipeline_images=1, other_pipeline_repeats=1, breakdown_images=1, zip_repeats=2,
    clients=4, latency_rounds=1,
    latency_batch_size=3, coldstart_repeats=1, memory_images=1,
)
