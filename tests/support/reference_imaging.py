"""The straightforward Pillow pipeline: each op as its own full-resolution pass, JPEG with
``optimize=True``, grayscale JPEG stored as RGB. The product's pipeline must stay within a small
pixel difference and file size of this (tests), and the benchmarks show what it costs beside it.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from typing import Any

from PIL import Image, ImageEnhance, ImageFilter, ImageOps
from pixelbatch.imaging.ops import OPS
from pixelbatch.imaging.pipeline import (
    _OUTPUTS,
    Rendered,
    _bind_steps,
    _flatten_on_white,
    _icc_fits,
    decode,
)

Params = Mapping[str, Any]
_LANCZOS = Image.Resampling.LANCZOS
_IDENTITY = list(range(256))


def _on_color(im: Image.Image, fn: Callable[[Image.Image], Image.Image]) -> Image.Image:
    if im.mode not in ("RGBA", "LA"):
        return fn(im)
    alpha = im.getchannel("A")
    out = fn(im.convert(im.mode[:-1]))
    out.putalpha(alpha)
    return out


def _apply_lut(im: Image.Image, lut: list[int]) -> Image.Image:
    table: list[int] = []
    for band in im.getbands():
        table.extend(_IDENTITY if band == "A" else lut)
    return im.point(table)


def _clip(v: float) -> int:
    return 0 if v < 0 else 255 if v > 255 else round(v)


def _mean_luma(im: Image.Image) -> float:
    hist = im.histogram()
    means = []
    for band in range(1 if im.mode in ("L", "LA") else 3):
        counts = hist[band * 256 : (band + 1) * 256]
        means.append(sum(i * c for i, c in enumerate(counts)) / max(1, sum(counts)))
    if len(means) == 1:
        return means[0]
    return 0.299 * means[0] + 0.587 * means[1] + 0.114 * means[2]


def _factor(amount: float) -> float:
    return 1.0 + amount / 100.0


def resize(im: Image.Image, p: Params) -> Image.Image:
    limits = [m / s for m, s in ((p["max_width"], im.width), (p["max_height"], im.height)) if m]
    scale = min(limits)
    if scale == 1 or (scale > 1 and not p["upscale"]):
        return im
    size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    return im.resize(size, _LANCZOS, reducing_gap=3.0 if scale < 1 else None)


def brightness(im: Image.Image, p: Params) -> Image.Image:
    if p["amount"] == 0:
        return im
    f = _factor(p["amount"])
    return _apply_lut(im, [_clip(v * f) for v in range(256)])


def contrast(im: Image.Image, p: Params) -> Image.Image:
    if p["amount"] == 0:
        return im
    f = _factor(p["amount"])
    mean = int(_mean_luma(im) + 0.5)
    return _apply_lut(im, [_clip(mean + f * (v - mean)) for v in range(256)])


def saturation(im: Image.Image, p: Params) -> Image.Image:
    if p["amount"] == 0 or im.mode in ("L", "LA"):
        return im
    return ImageEnhance.Color(im).enhance(_factor(p["amount"]))


def grayscale(im: Image.Image, p: Params) -> Image.Image:
    return im.convert("LA" if im.mode in ("RGBA", "LA") else "L")


def colorize(im: Image.Image, p: Params) -> Image.Image:
    return _on_color(im, lambda c: ImageOps.colorize(c.convert("L"), p["dark"], p["light"]))


def sharpen(im: Image.Image, p: Params) -> Image.Image:
    if p["amount"] == 0:
        return im
    mask = ImageFilter.UnsharpMask(radius=2, percent=round(p["amount"] * 30), threshold=2)
    return _on_color(im, lambda c: c.filter(mask))


def denoise(im: Image.Image, p: Params) -> Image.Image:
    strength = p["strength"]
    if strength == 0:
        return im
    return _on_color(im, lambda c: _smooth_flat_areas(c, strength))


def _smooth_flat_areas(im: Image.Image, strength: float) -> Image.Image:
    smoothed = im.filter(ImageFilter.GaussianBlur(0.5 + 0.15 * strength))
    weight = min(1.0, 0.2 + 0.08 * strength)
    edges = smoothed.convert("L").filter(ImageFilter.FIND_EDGES)
    mask = edges.point([_clip(weight * max(0, 255 - 4 * v)) for v in range(256)])
    return Image.composite(smoothed, im, mask)


REFERENCE_OPS: dict[str, Callable[[Image.Image, Params], Image.Image]] = {
    "resize": resize, "shrink": lambda im, p: resize(im, {**p, "upscale": False}),
    "brightness": brightness, "contrast": contrast, "saturation": saturation,
    "grayscale": grayscale, "colorize": colorize, "sharpen": sharpen, "denoise": denoise,
}


def encode(im: Image.Image, fmt: str, quality: int, icc_profile: bytes | None) -> Rendered:
    ext, content_type = _OUTPUTS[fmt]
    if fmt != "png" and im.mode in ("RGBA", "LA") and fmt == "jpeg":
        im = _flatten_on_white(im)
    elif fmt != "png" and im.mode in ("L", "LA"):
        im = im.convert("RGB" if im.mode == "L" else "RGBA")
    im.info = {}
    options: dict[str, Any] = {}
    if icc_profile and _icc_fits(icc_profile, im.mode):
        options["icc_profile"] = icc_profile
    buf = io.BytesIO()
    if fmt == "jpeg":
        im.save(buf, "JPEG", quality=quality, optimize=True, **options)
    elif fmt == "webp":
        im.save(buf, "WEBP", quality=quality, method=4, **options)
    else:
        im.save(buf, "PNG", compress_level=3, **options)
    return Rendered(buf.getvalue(), ext, content_type, im.width, im.height)


def reference_pipeline(
    data: bytes, steps: list[dict[str, Any]], inputs: dict[str, Any]
) -> Rendered:
    """``run_pipeline`` as each op's plain full-resolution Pillow pass."""
    image, icc = decode(data)
    fmt, quality = "jpeg", 90
    for step in _bind_steps(steps, inputs, partial=False):
        if step.spec.apply is None:
            fmt, quality = step.params["format"], step.params["quality"]
            continue
        own = REFERENCE_OPS.get(next(n for n, s in OPS.items() if s is step.spec))
        image = (own or step.spec.apply)(image, step.params)
    return encode(image, fmt, quality, icc)
