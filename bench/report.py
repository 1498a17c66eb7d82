"""Sections of the report, the machine they ran on, and docs/performance.md."""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import moto
import PIL
from PIL import features

from bench import REPO


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    headline: str  # the ratio, in one line
    body: str  # markdown: tables and how they were measured

    def markdown(self) -> str:
        return f"## {self.title}\n\n**{self.headline}**\n\n{self.body.strip()}\n"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024**2:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head


def machine() -> list[tuple[str, str]]:
    jpeg = features.version("libjpeg_turbo") or features.version("jpg") or "?"
    return [
        ("CPU", _cpu_model()),
        ("Cores", str(os.cpu_count())),
        ("RAM", _ram_gib()),
        ("OS", f"{platform.system()} {platform.release()}"),
        ("Python", platform.python_version()),
        ("Pillow", f"{PIL.__version__} (libjpeg-turbo {jpeg})"),
        ("moto", moto.__version__),
        ("Commit", _commit()),
        ("Date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
    ]


INTRO = """\
# Performance

Numbers from `python -m bench` (`make bench`) on 12-megapixel phone photos (4032x3024 JPEGs
made by `tests/fixtures/corpus/make_phone_set.py`). Every full run rewrites this page; the intro
lives in `bench/report.py`.

The machine is small, shared and noisy, so no number here is an absolute time to hold another
machine to. Each benchmark is a **ratio of two measurements taken side by side in the same run**,
interleaved (in turn, forward then backward) and repeated, reported as a median with its spread.

- **System overhead**: time from `POST /api/tasks/batch` to the task finished (ZIP written),
  over the pure `run_pipeline` time of the same photos divided by the usable parallelism
  p = min(MaxConcurrency 5, cores). 1.0 would mean the system adds nothing to the pixel work and
  keeps every core busy. Locally moto, Step Functions, the gateway and every Lambda run in one
  Python process on the same cores as the pixels, so two side measurements tell the causes
  apart: the cores the machine actually gave during the run (another tenant may take some),
  and stack CPU / pure CPU, the CPU spent per unit of pixel work whatever the cores. Good:
  stack CPU / pure CPU close to 1; each 0.1 above is 10% of the pixel work again spent on
  plumbing.
- **Pipeline vs floor**: a catalog pipeline over the least work that yields the same output
  (Pillow decode of the input, encode of an output-sized image in the output format and
  quality), before → after: before is the plain reference pipeline (each op its own
  full-resolution pass, `tests/support/reference_imaging.py`), after is the product's, run side
  by side on the same photos; with how far the product's output is from the reference's (mean
  absolute pixel difference, file size). Tone edits share one lookup-table pass (contrast also
  needs a histogram, of a sample on a large photo), so basic_clean should land under 2; the
  unsharp mask, the denoise blur and the saturation matrix run on OpenCV with Pillow's
  arithmetic, a run of them on one array, but still cost a few full-resolution passes each,
  and the catalog's JPEGs keep `optimize` (without it files grow up to 9%).
- **Image engine**: Pillow against OpenCV and libvips (pyvips) on a blur, an unsharp mask and
  a resize of the same photos, one core each, and the decision between them.
- **Lambda memory**: each pipeline's CPU time per photo (before → after) modelled as Lambda
  duration and GB-s at 1024, 1769 and 2048 MB; good: the least memory that runs at full speed.
- **Cold start**: every function's `import app` in a fresh interpreter over `import boto3,
  aws_lambda_powertools` alone, before (the baseline commit) → after; the goal is 1.5.
- **ZIP**: `write_zip_to_s3` of a batch's outputs over reading the same bytes once from the
  same S3, and over a plain copy (the same reads into a multipart upload without the ZIP
  format), with part uploads overlapping the reads (after) and one part at a time (before), on
  moto in process and on the moto server. On a store that writes as fast as it reads, good is
  about 2 against the read (every byte comes in once and goes out once); moto's multipart writes
  cost it more than its reads, so the copy is the fair yardstick here: good is at most 1, with a
  memory peak of a small multiple of the 8 MiB part size, whatever the number and size of the
  members.
- **Create latency**: `POST /api/tasks/batch` p50 and p99 with 20 users sending at once,
  p99/p50 (good: under ~2, no convoy), create p50 over a trivial route's p50 at the same
  concurrency (the price of the charge transaction, a few reads and StartExecution), and the
  slowdown from one create at a time to 20 at once. Locally every DynamoDB operation is
  serialized (`devstack/dynamodb_lock.py`) and one process serves all, so that slowdown grows
  with the number of clients; on AWS every create has a Lambda of its own.
- **Responsiveness**: a 1-image create and a read of a finished task, p99 while 5 batches of
  12-megapixel photos run over p99 on the idle stack; the goal is 3. Image work runs in
  background environments (`SCHED_IDLE`), so what is left to measure is the emulator's one
  interpreter serving both.
- **Cost model**: DynamoDB request units, Step Functions transitions, Lambda GB-s and S3
  requests per image, counted from one real batch, and the US-East-1 list price of 1,000
  images. Good: constant per image whatever the batch size, and dominated by the image work
  (Lambda duration) rather than by bookkeeping.

Run it: `.venv/bin/python -m bench` (full, rewrites this page); `--quick` (a smoke run that
only prints); `--only NAME` (floor, engine, memory, coldstart, overhead, zip, latency,
responsive or cost; repeatable); `--images N` (photos per batch, default 50); `--output PATH`.
The engine section measures libvips only where pyvips is importable (`pip install pyvips==3.2.0
pyvips-binary==8.18.7` into the venv; it is no dependency of the product).
"""


def document(command: str, sections: Sequence[Section], elapsed_s: float) -> str:
    parts = [INTRO, "## Machine and command\n", table(["", ""], machine()), ""]
    parts.append(f"Command: `{command}` (took {elapsed_s / 60:.1f} min)\n")
    parts.append("## Summary\n")
    parts.append(table(["Benchmark", "Result"], [(s.title, s.headline) for s in sections]))
    parts.append("")
    parts += [section.markdown() for section in sections]
    return "\n".join(parts).rstrip() + "\n"
