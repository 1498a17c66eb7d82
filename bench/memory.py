"""Lambda memory for the item worker, sized by measurement: each catalog pipeline's CPU time per
12 MP photo on one core of this machine (before: the plain reference pipeline; after: the
product's), modelled as Lambda duration and GB-s at 1024, 1769 and 2048 MB, and the peak memory
a fresh worker process reaches running it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from bench import REPO
from bench.context import Context
from bench.photos import BATCH_INPUTS, Photo, pipelines
from bench.pricing import LAMBDA_PER_GB_S
from bench.report import Section, table
from bench.stats import median, rotated
from devstack.template import load_template
from tests.support.reference_imaging import reference_pipeline

PER_IMAGES = 1000
FULL_CORE_MB = 1769  # Lambda gives a function one whole vCPU at 1,769 MB, a share below that
SIZES = (1024, FULL_CORE_MB, 2048)
WORKER = "ProcessItemFunction"
_PEAK_PROBE = """
import json, resource, sys
from pixelbatch.imaging.heap import keep_freed_memory
from pixelbatch.imaging.pipeline import run_pipeline
keep_freed_memory()
steps, inputs = json.loads(sys.argv[1]), json.loads(sys.argv[2])
run_pipeline(open(sys.argv[3], "rb").read(), steps, inputs)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def duration_s(cpu_s: float, memory_mb: int) -> float:
    """Below 1,769 MB a function gets that share of a vCPU; above, more vCPUs, which one
    thread of pixel work cannot use (Pillow and libjpeg run an image on one core)."""
    return cpu_s * max(1.0, FULL_CORE_MB / memory_mb)


def gb_s(cpu_s: float, memory_mb: int) -> float:
    return memory_mb / 1024 * duration_s(cpu_s, memory_mb)


def cpu_seconds(action: Callable[[], object]) -> float:
    started = time.process_time()
    action()
    return time.process_time() - started


@dataclass(frozen=True)
class PipelineCpu:
    pipeline_id: str
    before_s: float
    after_s: float
    peak_mb: float


def _inputs(pipeline_id: str) -> dict[str, Any]:
    return BATCH_INPUTS if pipeline_id == "pl_basic_clean" else {}


def peak_rss_mb(photo: Photo, steps: list[dict[str, Any]], inputs: dict[str, Any],
                scratch: str) -> float:
    """ru_maxrss of a fresh interpreter that imports the pipeline and runs it once."""
    path = os.path.join(scratch, "photo.jpg")
    with open(path, "wb") as out:
        out.write(photo.data)
    ran = subprocess.run(
        [sys.executable, "-c", _PEAK_PROBE, json.dumps(steps), json.dumps(inputs), path],
        capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "layers" / "core")},
    )
    return int(ran.stdout.strip()) / 1024  # KiB on Linux


def measure(photos: list[Photo], repeats: int, scratch: str) -> list[PipelineCpu]:
    from pixelbatch.imaging.pipeline import run_pipeline

    results = []
    for pipeline_id, steps in pipelines().items():
        inputs = _inputs(pipeline_id)
        before: list[float] = []
        after: list[float] = []
        for photo in photos:
            ours, theirs = rotated([
                partial(cpu_seconds, partial(run_pipeline, photo.data, steps, inputs)),
                partial(cpu_seconds, partial(reference_pipeline, photo.data, steps, inputs)),
            ], repeats)
            after.append(min(ours))
            before.append(min(theirs))
        peak = peak_rss_mb(photos[0], steps, inputs, scratch)
        results.append(PipelineCpu(pipeline_id, median(before), median(after), peak))
    return results


def _cost(cpu_s: float, memory_mb: int) -> float:
    return gb_s(cpu_s, memory_mb) * LAMBDA_PER_GB_S * PER_IMAGES


def _rows(results: list[PipelineCpu]) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for r in results:
        for mb in SIZES:
            rows.append((
                r.pipeline_id, mb,
                f"{duration_s(r.before_s, mb):.2f} → {duration_s(r.after_s, mb):.2f}",
                f"{gb_s(r.before_s, mb):.3f} → {gb_s(r.after_s, mb):.3f}",
                f"${_cost(r.before_s, mb):.4f} → ${_cost(r.after_s, mb):.4f}",
                f"{r.peak_mb:.0f}",
            ))
    return rows


def choice(results: list[PipelineCpu]) -> int:
    """The size with the least GB-s over the catalog; of equals, the fastest."""
    def key(mb: int) -> tuple[float, float]:
        return (round(sum(gb_s(r.after_s, mb) for r in results), 6),
                sum(duration_s(r.after_s, mb) for r in results))
    return min(SIZES, key=key)


def run(ctx: Context) -> Section:
    photos = ctx.photos(ctx.plan.memory_images)
    with tempfile.TemporaryDirectory(prefix="memory-") as scratch:
        results = measure(photos, ctx.plan.floor_repeats, scratch)
    configured = load_template(REPO / "template.yaml").function(WORKER).memory_size
    best = choice(results)
    basic = next(r for r in results if r.pipeline_id == "pl_basic_clean")
    headline = (
        f"item worker at {best} MB (template: {configured} MB); basic_clean per image "
        f"{gb_s(basic.before_s, configured):.3f} → {gb_s(basic.after_s, configured):.3f} GB-s, "
        f"Lambda duration ${_cost(basic.before_s, configured):.4f} → "
        f"${_cost(basic.after_s, configured):.4f} per 1,000 images; peak RSS "
        f"{max(r.peak_mb for r in results):.0f} MB"
    )
    headers = ["Pipeline", "MB", "duration s, before → after", "GB-s / image",
               "Lambda duration per 1,000 images", "peak RSS MB"]
    body = "\n\n".join([
        table(headers, _rows(results)),
        f"CPU time (`time.process_time`) of one pipeline run per 12 MP photo on one core of "
        f"this machine, best of {ctx.plan.floor_repeats} per photo (pipeline and reference in "
        f"turn), median over {len(photos)} photos; before: the plain reference pipeline, "
        "after: the product's. Lambda gives a function a share of one vCPU in proportion to "
        f"its memory up to {FULL_CORE_MB} MB, and more vCPUs above, which one image's pixel "
        "work (one thread) cannot use; so duration = CPU time x max(1, "
        f"{FULL_CORE_MB} / MB), taking an arm64 core as fast as one here, and GB-s = MB / 1024 "
        "x duration. At 1,024 and 1,769 MB the GB-s are the same and 1,769 MB is 1.73x "
        "faster; 2,048 MB costs 16% more for no speed. Network waits (S3 get and put) are "
        "billed too and grow with the memory, so the least memory that runs at full speed "
        "wins. Peak RSS: `ru_maxrss` of a fresh interpreter that imports the pipeline and "
        "runs it once on the first photo (the largest input allowed, 50 MP, needs about four "
        "times the pixel memory of a 12 MP one). Price: arm64 "
        f"${LAMBDA_PER_GB_S:.10f} per GB-s. The {WORKER}'s MemorySize in template.yaml is "
        f"{configured} MB.",
    ])
    return Section("memory", "Lambda memory", headline, body)
