"""Pipeline vs physical floor: each catalog pipeline against the least work that produces an
output of the same format, quality, size and mode."""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import partial
from typing import Any

from PIL import Image
from pixelbatch.imaging.ops import OPS
from pixelbatch.imaging.pipeline import Rendered, decode, encode, run_pipeline

from bench.context import Context
from bench.photos import BATCH_INPUTS, Photo, batch_steps, feature_pipeline, pipelines
from bench.report import Section, table
from bench.stats import Summary, clocked, interleaved, median, percentile, timed

FLOOR_METHOD = (
    "The floor decodes the input with Pillow (straight to grayscale in the JPEG decoder when "
    "the output is grayscale), crops it to the output's size when the output is smaller, and "
    "saves it in the output's format and quality with Pillow's default effort: JPEG without "
    "`optimize`, PNG at the product's `compress_level=3` (Pillow's default 6 would be slower "
    "than the product)."
)
_FORMATS = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}
_PNG_LEVEL = 3


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

    @property
    def ratio(self) -> float:
        return self.pipeline_s / self.floor_s


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

    def pipeline(self) -> float:
        seconds, self.rendered = clocked(partial(run_pipeline, self.data, self.steps, self.inputs))
        return seconds

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
    """Per photo: pipeline and floor alternately, ``repeats`` times each; best of each side."""
    if warm_up:
        run_pipeline(photos[0].data, steps, inputs)  # first use of each code path
    timings, outputs, last = [], [], None
    for photo in photos:
        run = _PhotoRun(photo.data, steps, inputs)
        pipeline_times, floor_times = interleaved(run.pipeline, run.floor, repeats)
        timings.append(ImageTiming(min(pipeline_times), min(floor_times)))
        assert run.rendered is not None
        outputs.append(run.rendered.data)
        last = run.output()
    assert last is not None
    return PipelineResult(timings, outputs, last)


def _row(name: str, result: PipelineResult) -> list[object]:
    ratios = [t.ratio for t in result.timings]
    spread = Summary.of(ratios)
    return [
        name, len(ratios), f"{median(ratios):.2f}", f"{percentile(ratios, 90):.2f}",
        f"{spread.low:.2f}–{spread.high:.2f}",
        f"{median([t.pipeline_s for t in result.timings]) * 1000:.0f}",
        f"{median([t.floor_s for t in result.timings]) * 1000:.0f}", result.output.label,
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
        times[f"op {step['op']}"], image = clocked(partial(spec.apply, image, params))
    times["encode(): q90 optimize=True"] = timed(partial(encode, image, "jpeg", 90,
                                                         icc_profile=icc))
    times[BARE_ENCODE] = timed(partial(image.save, io.BytesIO(), "JPEG", quality=90))
    return times


def breakdown(photos: list[Photo], runs: int) -> str:
    samples: dict[str, list[float]] = {}
    for photo in photos:
        best: dict[str, float] = {}
        for _ in range(runs):
            for stage, seconds in _stage_times(photo.data, batch_steps(), BATCH_INPUTS).items():
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
    rows = [_row(f"{batch_pipeline} (brightness 10, contrast 5)", batch)]
    others = ctx.photos(plan.other_pipeline_images)
    for pipeline_id, steps in pipelines().items():
        if pipeline_id != batch_pipeline:
            result = time_pipeline(others, steps, {}, 1, warm_up=not plan.quick)
            rows.append(_row(f"{pipeline_id} (defaults)", result))
    ratios = [t.ratio for t in batch.timings]
    headline = (
        f"basic_clean / floor: median {median(ratios):.2f}, p90 {percentile(ratios, 90):.2f} "
        f"over {len(ratios)} photos"
    )
    headers = ["Pipeline", "photos", "median ratio", "p90 ratio", "spread", "pipeline ms",
               "floor ms", "output (last photo)"]
    stage_photos = ctx.photos(plan.breakdown_images)
    body = "\n\n".join([
        table(headers, rows),
        f"Per photo, the pipeline and its floor run alternately ({plan.floor_repeats}x each for "
        "basic_clean, once each for the others, after a warm-up run); the photo's ratio is "
        "the best pipeline time over the best floor time, then median and p90 across photos "
        f"(spread: {Summary.of(ratios).spread_label} of the per-photo ratios). {FLOOR_METHOD}",
        f"Where basic_clean's time goes (each stage best of {plan.floor_repeats}, median over "
        f"{len(stage_photos)} photos; every fifth photo of the set carries an EXIF rotation):",
        breakdown(stage_photos, plan.floor_repeats),
    ])
    return Section("floor", "Pipeline vs physical floor", headline, body)
