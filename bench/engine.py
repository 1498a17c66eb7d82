"""Image engine: Pillow against libvips (pyvips) on the same 12 MP photos, side by side, one
core each: a resize to 2048 px with JPEG out, and a Gaussian blur (sigma 2) at full size with
JPEG out. pyvips is not a dependency of the product; the section runs when it is importable."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from functools import partial
from types import ModuleType

from PIL import Image, ImageFilter

from bench.context import Context
from bench.photos import Photo
from bench.report import Section, table
from bench.stats import Summary, rotated

LONG_SIDE = 2048
SIGMA = 2.0
INSTALL = "pip install pyvips==3.2.0 pyvips-binary==8.18.7"
DECISION = (
    "Decision: the product stays on Pillow for now. pyvips's wheels (`pyvips-binary`) need "
    "glibc 2.28, so a switch means the python3.12+ Lambda runtimes on Amazon Linux 2023 instead "
    "of python3.11 on Amazon Linux 2, a layer built for that platform, and every op rewritten "
    "on libvips with its own output to check against today's. Where the catalog's time goes "
    "now (Pipeline vs floor): the tone and resize pipelines are within about 2x of a bare "
    "Pillow decode and encode, which libvips would also pay; the ones with an unsharp mask or "
    "a blur (bw_classic, portrait_retouch, hdr_tone, sepia_legacy) are dominated by those "
    "Pillow filters, and that is where libvips's lead below would show. That is the case for "
    "moving the item worker to libvips together with the runtime upgrade."
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


def pillow_resize(data: bytes) -> bytes:
    """The product's way: the JPEG decoder scales in the DCT where it can, Lanczos does the
    rest."""
    image = Image.open(io.BytesIO(data))
    scale = LONG_SIDE / max(image.size)
    size = (round(image.width * scale), round(image.height * scale))
    image.draft("RGB", size)
    out = io.BytesIO()
    image.convert("RGB").resize(size, Image.Resampling.LANCZOS).save(out, "JPEG", quality=85)
    return out.getvalue()


def pillow_blur(data: bytes) -> bytes:
    out = io.BytesIO()
    image = Image.open(io.BytesIO(data)).convert("RGB")
    image.filter(ImageFilter.GaussianBlur(SIGMA)).save(out, "JPEG", quality=90)
    return out.getvalue()


def vips_resize(vips: ModuleType, data: bytes) -> bytes:
    image = vips.Image.thumbnail_buffer(data, LONG_SIDE)  # shrink-on-load, like a draft
    result: bytes = image.jpegsave_buffer(Q=85)
    return result


def vips_blur(vips: ModuleType, data: bytes) -> bytes:
    image = vips.Image.new_from_buffer(data, "", access="sequential")
    result: bytes = image.gaussblur(SIGMA).jpegsave_buffer(Q=90)
    return result


def _ratio(photos: list[Photo], pillow: Callable[[bytes], bytes],
           vips: Callable[[bytes], bytes], repeats: int) -> tuple[Summary, float, float]:
    ratios, pillow_s, vips_s = [], [], []
    for photo in photos:
        ours, theirs = rotated([partial(_cpu, partial(pillow, photo.data)),
                                partial(_cpu, partial(vips, photo.data))], repeats)
        pillow_s.append(min(ours))
        vips_s.append(min(theirs))
        ratios.append(min(ours) / min(theirs))
    summary = Summary.of(ratios)
    return summary, sorted(pillow_s)[len(pillow_s) // 2], sorted(vips_s)[len(vips_s) // 2]


def run(ctx: Context) -> Section:
    vips = _pyvips()
    if vips is None:
        return Section("engine", "Image engine", f"pyvips not installed (`{INSTALL}`)",
                       DECISION)
    photos = ctx.photos(ctx.plan.other_pipeline_images)
    repeats = max(2, ctx.plan.floor_repeats)
    resize = _ratio(photos, pillow_resize, partial(vips_resize, vips), repeats)
    blur = _ratio(photos, pillow_blur, partial(vips_blur, vips), repeats)
    rows = [
        (f"resize to {LONG_SIDE} px + JPEG q85", resize[0].fmt(), f"{resize[1] * 1000:.0f}",
         f"{resize[2] * 1000:.0f}"),
        (f"Gaussian blur sigma {SIGMA:g} + JPEG q90", blur[0].fmt(), f"{blur[1] * 1000:.0f}",
         f"{blur[2] * 1000:.0f}"),
    ]
    headline = (
        f"Pillow / libvips, one core: resize {resize[0].median:.2f}x, blur "
        f"{blur[0].median:.2f}x; staying on Pillow (python3.11 runtime)"
    )
    body = "\n\n".join([
        table(["12 MP photo to", "Pillow / libvips CPU time", "Pillow ms", "libvips ms"], rows),
        f"CPU time (`time.process_time`) per photo, best of {repeats}, the two engines in "
        f"turn, over {len(photos)} photos; libvips {vips.version(0)}.{vips.version(1)} "
        "through pyvips with `VIPS_CONCURRENCY=1`. Pillow resizes the product's way (a JPEG "
        "draft, then Lanczos); libvips with `thumbnail_buffer` (shrink-on-load, then its "
        "default kernel).",
        DECISION,
    ])
    return Section("engine", "Image engine", headline, body)
