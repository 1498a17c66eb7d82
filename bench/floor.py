"""Pipeline vs physical floor: each catalog pipeline against the least work that produces an
output of the same format, quality, size and mode; before (the plain reference pipeline, each op
its own full-resolution pass) and after (the product's), side by side, with how far the
product's output is from the reference's."""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import partial
from typing import Any

from PIL import Image, ImageChops, ImageStat
from pixelbatch.imaging.ops import OPS, apply_tones
from pixelbatch.imaging.pipeline import Rendered, decode, encode, run_pipeline

from bench.context import Context
from bench.photos import BATCH_INPUTS, Photo, batch_steps, feature_pipeline, pipelines
from bench.report import Section, table
from bench.stats import Summary, clocked, median, percentile, rotated, timed
from tests.support.reference_imaging import reference_pipeline

FLOOR_METHOD = (
    "The floor decodes the input with Pillow (straight to grayscale in the JPEG decoder when "
    "the output is grayscale), crops it to the output's size when the output is smaller, and "
    "saves it in the output's format and quality with Pillow's default effort: JPEG without "
    "`optimize`, PNG at the product's `compress_level=3` (Pillow's default 6 would be slower "
    "than the product)."
)
_FORMATS = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}
_PNG_LEVEL = 3
# The bounds: pipeline / floor (median over the set) and how close to the reference.
TARGETS = {"pl_basic_clean": 1.8, "pl_bw_classic": 2.2, "pl_product_shot": 1.2,
           "pl_watermark": 1.4}
OTHER_TARGET = 4.0
BLUR_PIPELINES = ("pl_portrait_retouch", "pl_hdr_tone", "pl_sepia_legacy")


@dataclass(frozen=True)
class Output:
    """What the floor must produce: the pipeline output's format, quality, size and mode."""

    fmt: str
    quality: int
    size: tuple[int, int]
    mode: str

    @property
    def label(self) -> str:
        quality = "" if self.fmt == "PNG" else f" q{self.quality}"
        return f"{self.fmt}{quality} {self.size[0]}x{self.size[1]} {self.mode}"


@dataclass(frozen=True)
class ImageTiming:
    pipeline_s: float
    floor_s: float
    reference_s: float
    difference: float  # mean absolute difference from the reference's output, worst channel
    size_ratio: float  # output bytes / the reference's

    @property
    def ratio(self) -> float:
        return self.pipeline_s / self.floor_s

    @property
    def reference_ratio(self) -> float:
        return self.reference_s / self.floor_s


def mean_abs_difference(a: bytes, b: bytes) -> float:
    first, second = (Image.open(io.BytesIO(data)).convert("RGB") for data in (a, b))
    return max(ImageStat.Stat(ImageChops.difference(first, second)).mean)


def literal(value: Any, inputs: dict[str, Any]) -> Any:
    """A step parameter's value: the literal, or the user's input or its default."""
    if isinstance(value, dict) and "$input" in value:
        return inputs.get(value["$input"], value.get("default"))
    return value


def output_of(rendered: Rendered, steps: list[dict[str, Any]], inputs: dict[str, Any]) -> Output:
    params: dict[str, Any] = next((s["params"] for s in steps if s["op"] == "encode"), {})
    quality = int(literal(params.get("quality", 90), inputs))
    mode = Image.open(io.BytesIO(rendered.data)).mode
    return Output(_FORMATS[rendered.ext], quality, (rendered.width, rendered.height), mode)


def floor_once(data: bytes, out: Output) -> None:
    source = Image.open(io.BytesIO(data))
    if out.mode == "L":
        source.draft("L", source.size)  # the decoder hands over luma only; no conversion pass
    source.load()
    image: Image.Image = source
    if image.mode != out.mode:
        image = image.convert(out.mode)
    image = _cropped(image, out.size)
    options: dict[str, Any] = {"quality": out.quality}
    if out.fmt == "PNG":
        options = {"compress_level": _PNG_LEVEL}
    image.save(io.BytesIO(), out.fmt, **options)


def _cropped(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    width, height = size
    if width * height >= image.width * image.height:
        return image
    if width > image.width or height > image.height:
        width, height = height, width  # the output was turned upright
    return image.crop((0, 0, width, height))


class _PhotoRun:
    """One photo through one pipeline; the pipeline's last output tells the floor its job."""

    def __init__(self, data: bytes, steps: list[dict[str, Any]], inputs: dict[str, Any]) -> None:
        self.data, self.steps, self.inputs = data, steps, inputs
        self.rendered: Rendered | None = None
        self.reference_output: Rendered | None = None

    def pipeline(self) -> float:
        seconds, self.rendered = clocked(partial(run_pipeline, self.data, self.steps, self.inputs))
        return seconds

    def reference(self) -> float:
        seconds, self.reference_output = clocked(
            partial(reference_pipeline, self.data, self.steps, self.inputs))
        return seconds

    def fidelity(self) -> tuple[float, float]:
        assert self.rendered is not None and self.reference_output is not None
        ours, theirs = self.rendered.data, self.reference_output.data
        return mean_abs_difference(ours, theirs), len(ours) / len(theirs)

    def floor(self) -> float:
        return timed(partial(floor_once, self.data, self.output()))

    def output(self) -> Output:
        if self.rendered is None:
            self.pipeline()
        assert self.rendered is not None
        return output_of(self.rendered, self.steps, self.inputs)


@dataclass(frozen=True)
class PipelineResult:
    timings: list[ImageTiming]
    outputs: list[bytes]
    output: Output


def time_pipeline(
    photos: list[Photo], steps: list[dict[str, Any]], inputs: dict[str, Any], repeats: int,
    *, warm_up: bool = True,
) -> PipelineResult:
    """Per photo: pipeline, reference and floor in turn, ``repeats`` times each; best of each."""
    if warm_up:
        run_pipeline(photos[0].data, steps, inputs)  # first use of each code path
        reference_pipeline(photos[0].data, steps, inputs)
    timings, outputs, last = [], [], None
    for photo in photos:
        run = _PhotoRun(photo.data, steps, inputs)
        ours, reference, floor = rotated([run.pipeline, run.reference, run.floor], repeats)
        timings.append(ImageTiming(min(ours), min(floor), min(reference), *run.fidelity()))
        assert run.rendered is not None
        outputs.append(run.rendered.data)
        last = run.output()
    assert last is not None
    return PipelineResult(timings, outputs, last)


def _row(pipeline_id: str, label: str, result: PipelineResult) -> list[object]:
    ratios = [t.ratio for t in result.timings]
    before = [t.reference_ratio for t in result.timings]
    spread = Summary.of(ratios)
    limit = 2.0 if pipeline_id in BLUR_PIPELINES else 1.0
    return [
        label, len(ratios), f"{median(before):.2f} → **{median(ratios):.2f}**",
        f"≤ {TARGETS.get(pipeline_id, OTHER_TARGET)}", f"{percentile(ratios, 90):.2f}",
        f"{spread.low:.2f}–{spread.high:.2f}",
        f"{median([t.reference_s for t in result.timings]) * 1000:.0f} → "
        f"{median([t.pipeline_s for t in result.timings]) * 1000:.0f}",
        f"{median([t.floor_s for t in result.timings]) * 1000:.0f}",
        f"{max(t.difference for t in result.timings):.2f} (≤ {limit})",
        f"{median([t.size_ratio for t in result.timings]):.3f} / "
        f"{max(t.size_ratio for t in result.timings):.3f}",
        result.output.label,
    ]


# ---- where basic_clean's time goes ---------------------------------------------------------

BARE_DECODE = "bare decode (floor)"
BARE_ENCODE = "bare encode q90 (floor)"


def _stage_times(
    data: bytes, steps: list[dict[str, Any]], inputs: dict[str, Any]
) -> dict[str, float]:
    times = {BARE_DECODE: timed(lambda: Image.open(io.BytesIO(data)).load())}
    times["decode(): + EXIF orientation, mode"], (image, icc) = clocked(partial(decode, data))
    for step in steps:
        if step["op"] == "encode":
            continue
        spec = OPS[step["op"]]
        params = spec.bind({k: literal(v, inputs) for k, v in step["params"].items()})
        assert spec.apply is not None
        times[f"op {step['op']} alone (before)"], image = clocked(
            partial(spec.apply, image, params))
    times["encode(): q90 optimize=True (before)"] = timed(
        partial(encode, image, "jpeg", 90, icc_profile=icc))
    times["encode(): q90 as the catalog says (after)"] = timed(
        partial(encode, image, "jpeg", 90, icc_profile=icc, optimize=_optimize(steps)))
    times[BARE_ENCODE] = timed(partial(image.save, io.BytesIO(), "JPEG", quality=90))
    return times


def _tone_pass(
    data: bytes, steps: list[dict[str, Any]], inputs: dict[str, Any]
) -> tuple[str, float]:
    """basic_clean's tone steps as the pipeline runs them: one lookup table, one pass."""
    image, _ = decode(data)
    tones = []
    for step in steps:
        spec = OPS[step["op"]]
        if spec.tone is not None:
            tones.append((spec.tone, spec.bind({k: literal(v, inputs)
                                                for k, v in step["params"].items()})))
    names = " + ".join(step["op"] for step in steps if OPS[step["op"]].tone is not None)
    return f"fused {names}: one table (after)", timed(partial(apply_tones, image, tones))


def _optimize(steps: list[dict[str, Any]]) -> bool:
    params: dict[str, Any] = next((s["params"] for s in steps if s["op"] == "encode"), {})
    return bool(params.get("optimize", True))


def breakdown(photos: list[Photo], runs: int) -> str:
    samples: dict[str, list[float]] = {}
    for photo in photos:
        best: dict[str, float] = {}
        for _ in range(runs):
            stages = _stage_times(photo.data, batch_steps(), BATCH_INPUTS)
            fused, seconds = _tone_pass(photo.data, batch_steps(), BATCH_INPUTS)
            stages[fused] = seconds
            for stage, seconds in stages.items():
                best[stage] = min(seconds, best.get(stage, seconds))
        for stage, seconds in best.items():
            samples.setdefault(stage, []).append(seconds)
    floor = median(samples[BARE_DECODE]) + median(samples[BARE_ENCODE])
    rows = [
        (stage, f"{median(values) * 1000:.0f}", f"{median(values) / floor:.2f}")
        for stage, values in samples.items()
    ]
    return table(["Stage of basic_clean", "median ms", "× floor"], rows)


# ---- the section -------------------------------------------------------------------------


def run(ctx: Context) -> Section:
    plan = ctx.plan
    batch_pipeline = feature_pipeline("basic_clean")
    batch = time_pipeline(ctx.photos(), batch_steps(), BATCH_INPUTS, plan.floor_repeats)
    ctx.batch_outputs = batch.outputs
    rows = [_row(batch_pipeline, f"{batch_pipeline} (brightness 10, contrast 5)", batch)]
    results = {batch_pipeline: batch}
    others = ctx.photos(plan.other_pipeline_images)
    for pipeline_id, steps in pipelines().items():
        if pipeline_id != batch_pipeline:
            result = time_pipeline(others, steps, {}, plan.other_pipeline_repeats,
                                   warm_up=not plan.quick)
            results[pipeline_id] = result
            rows.append(_row(pipeline_id, f"{pipeline_id} (defaults)", result))
    ctx.pipeline_results = results
    ratios = [t.ratio for t in batch.timings]
    before = [t.reference_ratio for t in batch.timings]
    headline = (
        f"basic_clean / floor: median {median(before):.2f} → {median(ratios):.2f}, p90 "
        f"{percentile(ratios, 90):.2f} over {len(ratios)} photos; others (median): " + ", ".join(
            f"{pid.removeprefix('pl_')} "
            f"{median([t.reference_ratio for t in r.timings]):.2f} → "
            f"{median([t.ratio for t in r.timings]):.2f}"
            for pid, r in results.items() if pid != batch_pipeline)
    )
    headers = ["Pipeline", "photos", "median ratio, before → after", "target", "p90 after",
               "spread after", "ms, before → after", "floor ms", "max pixel diff",
               "size / before, median / max", "output (last photo)"]
    stage_photos = ctx.photos(plan.breakdown_images)
    body = "\n\n".join([
        table(headers, rows),
        f"Per photo, the pipeline, the reference and the floor run in turn, forward then "
        f"backward ({plan.floor_repeats}x each for basic_clean, "
        f"{plan.other_pipeline_repeats}x each for the others, after a warm-up run); the "
        "photo's ratio is the best time over the best floor time, "
        "then median and p90 across photos (spread: "
        f"{Summary.of(ratios).spread_label} of the per-photo ratios). Before: the plain "
        "reference pipeline (`tests/support/reference_imaging.py`: each op its own "
        "full-resolution Pillow pass, grayscale JPEG stored as RGB, JPEG `optimize=True`). "
        "After: the product's `run_pipeline` (tone steps fused into one lookup table, with the "
        "mean luminance from a sample of a large photo; JPEG decoder drafts for a leading resize "
        "or grayscale; one-pass colorize; the unsharp mask (its blur at half resolution), the "
        "denoise blur and edge mask, "
        "the saturation matrix and portrait's shrink on OpenCV, `pixelbatch/imaging/"
        "filters.py`, with the JPEG read and written by OpenCV when the pipeline starts on "
        "pixels, and the pixels kept in one array from there to the encoder; a pipeline of "
        "tone steps alone keeps OpenCV's BGR order for the encoder and writes its table over "
        "the array). All three run in this process with the item worker's heap setting "
        "(`pixelbatch/imaging/heap.py`: freed blocks up to 32 MB stay in the heap). Max pixel "
        "diff: the largest mean absolute difference from the reference's output (levels of "
        "0..255, worst channel) over the photos, against the bound (1.0 for tone and resize, "
        "2.0 for blur-based pipelines); size: output bytes over the reference's. "
        f"{FLOOR_METHOD}",
        f"Where basic_clean's time goes (each stage best of {plan.floor_repeats}, median over "
        f"{len(stage_photos)} photos; every fifth photo of the set carries an EXIF rotation):",
        breakdown(stage_photos, plan.floor_repeats),
    ])
    return Section("floor", "Pipeline vs physical floor", headline, body)
