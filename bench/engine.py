"""Image engine: Pillow against OpenCV and libvips (pyvips) on the same 12 MP photos, side by
side, one core each: a Gaussian blur (sigma 2) and an unsharp mask at full size with JPEG out,
and a resize to 2048 px with JPEG out. OpenCV is the product's filter engine; pyvips is no
dependency of the product, and its columns are measured when it is importable."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from types import ModuleType

from PIL import Image, ImageFilter
from pixelbatch.imaging import filters
from pixelbatch.imaging.ops import _correction_lut

from bench.context import Context
from bench.photos import Photo
from bench.report import Section, table
from bench.stats import median, rotated

LONG_SIDE = 2048
SIGMA = 2.0
PERCENT = 150  # hdr_tone's sharpen
INSTALL = "pip install pyvips==3.2.0 pyvips-binary==8.18.7"
DECISION = (
    "Decision: Pillow decodes what OpenCV does not take, resizes with Lanczos where nothing "
    "smooths afterwards, draws and encodes PNG and WEBP; OpenCV (`opencv-python-headless` "
    "with numpy, in an imaging layer that only ProcessItem carries) runs the neighbourhood "
    "filters, the colour matrix, the lookup tables and portrait's shrink, and reads and "
    "writes the JPEGs of pipelines that start on pixels: the same libjpeg-turbo as Pillow's, "
    "byte for byte Pillow's files, without Pillow's four-byte pixels. Its filters give the "
    "same pixels to within a level (tests/unit/imaging/test_imaging_filters.py), and its "
    "manylinux2014 wheels keep the functions on the python3.11 runtime. libvips decodes, "
    "blurs and shrinks faster still, but pyvips's wheels need glibc 2.28 (the python3.12+ "
    "runtimes on Amazon Linux 2023, whose bytecode this machine's Python cannot compile for "
    "the layers), and its kernels are not Pillow's: a lossy encoder turns even a tenth of a "
    "level of resize difference into more than a level in its output (watermark's WEBP), so "
    "the product's Lanczos resizes would change either way. That is the next step for the "
    "resize pipelines, together with the runtime upgrade."
)


def _pyvips() -> ModuleType | None:
    os.environ.setdefault("VIPS_CONCURRENCY", "1")  # one core, as a 1,769 MB Lambda has
    try:
        import pyvips  # type: ignore[import-not-found,unused-ignore]
    except (ImportError, OSError):
        return None
    module: ModuleType = pyvips
    return module


def _cpu(action: Callable[[], object]) -> float:
    started = time.process_time()
    action()
    return time.process_time() - started


def _jpeg(image: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def _decoded(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def pillow_resize(data: bytes) -> bytes:
    """The product's way: the JPEG decoder scales in the DCT where it can, Lanczos does the
    rest."""
    image = Image.open(io.BytesIO(data))
    scale = LONG_SIDE / max(image.size)
    size = (round(image.width * scale), round(image.height * scale))
    image.draft("RGB", size)
    return _jpeg(image.convert("RGB").resize(size, Image.Resampling.LANCZOS), 85)


def pillow_blur(data: bytes) -> bytes:
    return _jpeg(_decoded(data).filter(ImageFilter.GaussianBlur(SIGMA)), 90)


def opencv_blur(data: bytes) -> bytes:
    blur = partial(filters.gaussian_blur, sigma=SIGMA)
    return _jpeg(filters.through_pixels(_decoded(data), blur), 90)


def pillow_unsharp(data: bytes) -> bytes:
    return _jpeg(_decoded(data).filter(ImageFilter.UnsharpMask(SIGMA, PERCENT, 2)), 90)


def opencv_unsharp(data: bytes) -> bytes:
    sharpen = partial(filters.unsharp_mask, sigma=SIGMA, correction=_correction_lut(PERCENT))
    return _jpeg(filters.through_pixels(_decoded(data), sharpen), 90)


def vips_resize(vips: ModuleType, data: bytes) -> bytes:
    image = vips.Image.thumbnail_buffer(data, LONG_SIDE)  # shrink-on-load, like a draft
    result: bytes = image.jpegsave_buffer(Q=85)
    return result


def vips_blur(vips: ModuleType, data: bytes) -> bytes:
    image = vips.Image.new_from_buffer(data, "", access="sequential")
    result: bytes = image.gaussblur(SIGMA).jpegsave_buffer(Q=90)
    return result


def vips_unsharp(vips: ModuleType, data: bytes) -> bytes:
    image = vips.Image.new_from_buffer(data, "", access="sequential")
    result: bytes = image.sharpen(sigma=SIGMA).jpegsave_buffer(Q=90)
    return result


Engine = Callable[[bytes], bytes]


@dataclass(frozen=True)
class Task:
    label: str
    pillow: Engine
    opencv: Engine | None
    vips: Callable[[ModuleType, bytes], bytes]


TASKS = (
    Task(f"Gaussian blur sigma {SIGMA:g} + JPEG q90", pillow_blur, opencv_blur, vips_blur),
    Task(f"unsharp mask sigma {SIGMA:g}, {PERCENT}% + JPEG q90", pillow_unsharp, opencv_unsharp,
         vips_unsharp),
    Task(f"resize to {LONG_SIDE} px + JPEG q85", pillow_resize, None, vips_resize),
)


def _medians(photos: list[Photo], engines: list[Engine], repeats: int) -> list[float]:
    """Each engine's median over the photos of its best CPU time, the engines in turn."""
    best: list[list[float]] = [[] for _ in engines]
    for photo in photos:
        runs = rotated([partial(_cpu, partial(engine, photo.data)) for engine in engines],
                       repeats)
        for index, times in enumerate(runs):
            best[index].append(min(times))
    return [median(times) for times in best]


def _cells(pillow_s: float, other_s: float | None) -> list[str]:
    if other_s is None:
        return ["—", "—"]
    return [f"{other_s * 1000:.0f}", f"{pillow_s / other_s:.2f}"]


def _row(task: Task, photos: list[Photo], vips: ModuleType | None, repeats: int) -> list[str]:
    engines: list[Engine] = [task.pillow]
    if task.opencv is not None:
        engines.append(task.opencv)
    if vips is not None:
        engines.append(partial(task.vips, vips))
    times = _medians(photos, engines, repeats)
    opencv_s = times[1] if task.opencv is not None else None
    vips_s = times[-1] if vips is not None else None
    return [task.label, f"{times[0] * 1000:.0f}", *_cells(times[0], opencv_s),
            *_cells(times[0], vips_s)]


def run(ctx: Context) -> Section:
    vips = _pyvips()
    photos = ctx.photos(ctx.plan.other_pipeline_images)
    repeats = max(2, ctx.plan.floor_repeats)
    rows = [_row(task, photos, vips, repeats) for task in TASKS]
    blur, unsharp = (float(row[3]) for row in rows[:2])
    vips_note = (f"libvips {vips.version(0)}.{vips.version(1)} through pyvips with "
                 "`VIPS_CONCURRENCY=1`" if vips is not None
                 else f"libvips not measured: pyvips not installed (`{INSTALL}`)")
    headline = (f"Pillow / OpenCV, one core: blur {blur:.2f}x, unsharp mask {unsharp:.2f}x; "
                "filters on OpenCV, the rest on Pillow")
    body = "\n\n".join([
        table(["12 MP photo", "Pillow ms", "OpenCV ms", "Pillow / OpenCV", "libvips ms",
               "Pillow / libvips"], rows),
        f"CPU time (`time.process_time`) per photo, best of {repeats}, the engines in turn, "
        f"median over {len(photos)} photos; OpenCV with one thread (`cv2.setNumThreads(1)`), "
        f"as the product runs it; {vips_note}. Each includes the decode and the JPEG encode. "
        "Pillow resizes the product's way (a JPEG draft, then Lanczos); libvips with "
        "`thumbnail_buffer` (shrink-on-load, then its default kernel); its sharpen works on "
        "the luma in LAB, so that row is indicative only.",
        DECISION,
    ])
    return Section("engine", "Image engine", headline, body)
