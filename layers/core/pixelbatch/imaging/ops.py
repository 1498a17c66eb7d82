"""Pipeline operations: each op is a small function registered with the params it accepts.

Ops take and return Pillow images in mode RGB, RGBA, L or LA (the pipeline normalises inputs to
RGB or RGBA; ``grayscale`` makes L or LA). Tone ops are lookup tables, which the pipeline fuses;
pixel ops work on numpy arrays of the colour bands (filters.py), which the pipeline chains. No
op modifies its input in place.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from PIL import (
    Image,
    ImageColor,
    ImageDraw,
    ImageFont,
    ImageMode,
    ImageOps,
)

from . import filters

if TYPE_CHECKING:
    from .filters import Pixels

Params = Mapping[str, Any]
OpFn = Callable[[Image.Image, Params], Image.Image]
# A pixel op: the op on an array of L or RGB pixels (filters.py). A run of consecutive pixel
# and tone ops moves the image into an array and back once.
PixelFn = Callable[["Pixels", Params], "Pixels"]
# A tone step: (params, mean luma of the image it would see) -> a lookup table applied to every
# colour band, or None for no change. Consecutive tone steps become one table and one pass.
ToneFn = Callable[[Params, Callable[[], float]], list[int] | None]

# Output dimension cap for params: keeps an upscale or pad from allocating gigabytes.
MAX_DIMENSION = 8192
POSITIONS = ("bottom_right", "bottom_left", "top_right", "top_left", "center")
FORMATS = ("jpeg", "png", "webp")

_LANCZOS = Image.Resampling.LANCZOS
_IDENTITY = list(range(256))
_REQUIRED: Any = object()
_ASPECT = re.compile(r"(\d{1,4}):(\d{1,4})")
_MIN_FONT_PX = 6


@dataclass(frozen=True)
class Param:
    """One op parameter: its type, range and default (``None`` means optional without value)."""

    kind: type  # int, float, bool or str
    default: Any = _REQUIRED
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()
    max_len: int = 100
    check: Callable[[str], None] | None = None

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED

    def coerce(self, name: str, value: Any) -> Any:
        """Return ``value`` checked against this spec; raise ValueError naming ``name``."""
        if self.kind is bool:
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be true or false")
            return value
        if self.kind is str:
            return self._coerce_str(name, value)
        return self._coerce_number(name, value)

    def _coerce_number(self, name: str, value: Any) -> int | float:
        # bool is an int subclass; a JSON true must not pass as 1
        ok_types = (int,) if self.kind is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, ok_types):
            raise ValueError(f"{name} must be a {'whole ' if self.kind is int else ''}number")
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite")
        if self.lo is not None and value < self.lo:
            raise ValueError(f"{name} must be >= {self.lo:g}")
        if self.hi is not None and value > self.hi:
            raise ValueError(f"{name} must be <= {self.hi:g}")
        return float(value) if self.kind is float else value

    def _coerce_str(self, name: str, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{name} must be a non-empty string")
        if len(value) > self.max_len:
            raise ValueError(f"{name} must be at most {self.max_len} characters")
        if self.choices and value not in self.choices:
            raise ValueError(f"{name} must be one of {', '.join(self.choices)}")
        if self.check is not None:
            self.check(value)
        return value


@dataclass(frozen=True)
class OpSpec:
    params: Mapping[str, Param]
    apply: OpFn | None  # None: terminal op handled by the pipeline (encode)
    check: Callable[[Params], None] | None = None  # rules spanning several params
    tone: ToneFn | None = None  # set for per-value tone edits, which the pipeline fuses
    pixels: PixelFn | None = None  # set for ops on pixel arrays, which the pipeline chains

    def bind(self, values: Params, *, partial: bool = False) -> dict[str, Any]:
        """Validate ``values`` and fill in defaults; ``partial`` tolerates missing required ones."""
        unknown = set(values) - set(self.params)
        if unknown:
            raise ValueError(f"unknown params: {', '.join(sorted(unknown))}")
        bound: dict[str, Any] = {}
        missing = False
        for name, spec in self.params.items():
            if name in values:
                bound[name] = spec.coerce(name, values[name])
            elif spec.required:
                if not partial:
                    raise ValueError(f"{name} is required")
                missing = True
            else:
                bound[name] = spec.default
        if self.check is not None and not missing:
            self.check(bound)
        return bound


OPS: dict[str, OpSpec] = {}


def op(
    name: str, *, check: Callable[[Params], None] | None = None, **params: Param
) -> Callable[[OpFn], OpFn]:
    """Register ``fn`` as op ``name`` accepting ``params``."""

    def register(fn: OpFn) -> OpFn:
        OPS[name] = OpSpec(params, fn, check)
        return fn

    return register


def tone_op(name: str, **params: Param) -> Callable[[ToneFn], ToneFn]:
    """Register ``table`` as tone op ``name``: applied alone, or fused with its neighbours."""

    def register(table: ToneFn) -> ToneFn:
        OPS[name] = OpSpec(params, lambda im, p: apply_tones(im, [(table, p)]), tone=table)
        return table

    return register


def pixel_op(
    name: str, *, check: Callable[[Params], None] | None = None, **params: Param
) -> Callable[[PixelFn], PixelFn]:
    """Register ``fn`` as op ``name``: on its own, or in one array with its neighbours."""

    def register(fn: PixelFn) -> PixelFn:
        def alone(im: Image.Image, p: Params) -> Image.Image:
            return filters.through_pixels(im, lambda pixels: fn(pixels, p))

        OPS[name] = OpSpec(params, alone, check, pixels=fn)
        return fn

    return register


# ---- param checks -------------------------------------------------------------------------


def _check_color(value: str) -> None:
    ImageColor.getrgb(value)  # raises ValueError for unknown colours


def _parse_aspect(value: str) -> float:
    m = _ASPECT.fullmatch(value)
    if not m or int(m[1]) == 0 or int(m[2]) == 0:
        raise ValueError(f"aspect must look like 16:9, got {value!r}")
    return int(m[1]) / int(m[2])


def _check_aspect(value: str) -> None:
    _parse_aspect(value)


def _check_text(value: str) -> None:
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError("text must be a single line without control characters")


def _check_resize(p: Params) -> None:
    if p["max_width"] is None and p["max_height"] is None:
        raise ValueError("resize needs max_width or max_height")


def _check_crop(p: Params) -> None:
    if p["left"] >= p["right"] or p["top"] >= p["bottom"]:
        raise ValueError("crop needs left < right and top < bottom")


def _dim(default: Any = _REQUIRED) -> Param:
    return Param(int, default, lo=1, hi=MAX_DIMENSION)


def _amount(lo: float, hi: float, default: float) -> Param:
    return Param(float, default, lo=lo, hi=hi)


def _fraction(default: float) -> Param:
    return Param(float, default, lo=0.0, hi=1.0)


# ---- channel helpers ----------------------------------------------------------------------


def _apply_lut(im: Image.Image, lut: list[int]) -> Image.Image:
    table: list[int] = []
    for band in im.getbands():
        table.extend(_IDENTITY if band == "A" else lut)
    return im.point(table)


def _clip(v: float) -> int:
    return 0 if v < 0 else 255 if v > 255 else round(v)


def _mean_luma(hist: list[int], mode: str) -> float:
    means = []
    for band in range(1 if mode in ("L", "LA") else 3):
        counts = hist[band * 256 : (band + 1) * 256]
        means.append(sum(i * c for i, c in enumerate(counts)) / max(1, sum(counts)))
    if len(means) == 1:
        return means[0]
    return 0.299 * means[0] + 0.587 * means[1] + 0.114 * means[2]  # ITU-R 601, as convert("L")


def _factor(amount: float) -> float:
    return 1.0 + amount / 100.0


def _remapped(hist: list[int], lut: list[int], mode: str) -> list[int]:
    """The histogram the image would have after ``lut`` on its colour bands."""
    out = list(hist)
    for band, name in enumerate(ImageMode.getmode(mode).bands):
        if name == "A":
            continue
        counts = hist[band * 256 : (band + 1) * 256]
        moved = [0] * 256
        for value, count in enumerate(counts):
            moved[lut[value]] += count
        out[band * 256 : (band + 1) * 256] = moved
    return out


def _luma_sample(im: Image.Image) -> Image.Image:
    """The image, or an evenly spread sample of a large one with much the same mean per band."""
    if im.width * im.height <= filters.EXACT_PIXELS:
        return im
    size = (im.width // filters.SAMPLE_STRIDE, im.height // filters.SAMPLE_STRIDE)
    return im.resize(size, Image.Resampling.NEAREST)


ToneSteps = Sequence[tuple[ToneFn, Params]]


def tone_table(steps: ToneSteps, histogram: Callable[[], list[int]], mode: str) -> list[int]:
    """Tone steps as one lookup table: the same pixels as one pass per step, in one pass.

    A step that depends on the image (contrast's mean luminance) reads the histogram the
    image would have by then, worked out from ``histogram()`` of the input (Pillow's layout,
    of a sample of a large image), read only if a step asks.
    """
    lut = _IDENTITY
    hist: list[int] | None = None

    def mean_luma() -> float:
        nonlocal hist
        if hist is None:
            hist = histogram()
        return _mean_luma(_remapped(hist, lut, mode), mode)

    for table, params in steps:
        step = table(params, mean_luma)
        if step is not None:
            lut = [step[v] for v in lut]
    return lut


def apply_tones(im: Image.Image, steps: ToneSteps) -> Image.Image:
    """Tone steps in one lookup pass over a Pillow image."""
    lut = tone_table(steps, lambda: _luma_sample(im).histogram(), im.mode)
    return im if lut == _IDENTITY else _apply_lut(im, lut)


def tones_on_pixels(pixels: Pixels, steps: ToneSteps) -> Pixels:
    """Tone steps in one lookup pass over an array of L or RGB pixels, written over them
    where the array may be written: it is the pipeline's own, and nothing reads it again."""
    lut = tone_table(steps, lambda: filters.histogram(pixels), filters.mode_of(pixels))
    return pixels if lut == _IDENTITY else filters.apply_lut(pixels, lut, in_place=True)


# ---- geometry -----------------------------------------------------------------------------


@op("auto_orient")
def _auto_orient(im: Image.Image, p: Params) -> Image.Image:
    # EXIF orientation is applied while decoding, before any op could see the raw pixels;
    # the step stays in schemas to document that the pipeline depends on it.
    return im


@op(
    "resize",
    check=_check_resize,
    max_width=_dim(None),
    max_height=_dim(None),
    upscale=Param(bool, False),
)
def _resize(im: Image.Image, p: Params) -> Image.Image:
    """Fit within max_width x max_height keeping the aspect ratio."""
    size = resize_target(im.size, p)
    return im if size is None else resized(im, size)


@pixel_op("shrink", check=_check_resize, max_width=_dim(None), max_height=_dim(None))
def _shrink(pixels: Pixels, p: Params) -> Pixels:
    """Fit within max_width x max_height, never enlarging, on OpenCV (filters.shrink): within
    about a fifth of a level of resize's pixels on a photo, three to four times faster. For
    pipelines that smooth afterwards; a lossy encoder turns even that fifth of a level into
    about a level of difference in its output, so resize stays where nothing else changes."""
    height, width = pixels.shape[:2]
    size = resize_target((width, height), {**p, "upscale": False})
    return pixels if size is None else filters.shrink(pixels, size)


def resize_target(size: tuple[int, int], p: Params) -> tuple[int, int] | None:
    """The size ``resize`` gives an image of ``size``, or None when it leaves it alone."""
    width, height = size
    limits = [m / s for m, s in ((p["max_width"], width), (p["max_height"], height)) if m]
    scale = min(limits)
    if scale == 1 or (scale > 1 and not p["upscale"]):
        return None
    return max(1, round(width * scale)), max(1, round(height * scale))


def resized(im: Image.Image, size: tuple[int, int]) -> Image.Image:
    if size == im.size:
        return im
    shrinking = size[0] < im.width
    # reducing_gap: a fast box reduction first; indistinguishable from a full Lanczos pass.
    # Cheaper filters are a tenth of a level from Lanczos, but a lossy encoder turns that
    # into more than a level of difference in its output.
    return im.resize(size, _LANCZOS, reducing_gap=3.0 if shrinking else None)


@op(
    "fit",
    width=_dim(),
    height=_dim(),
    centering_x=_fraction(0.5),
    centering_y=_fraction(0.5),
)
def _fit(im: Image.Image, p: Params) -> Image.Image:
    """Exactly width x height: scale to cover, then crop around the centering point."""
    size = (p["width"], p["height"])
    return ImageOps.fit(im, size, _LANCZOS, centering=(p["centering_x"], p["centering_y"]))


@op("pad", width=_dim(), height=_dim(), color=Param(str, "#ffffff", check=_check_color))
def _pad(im: Image.Image, p: Params) -> Image.Image:
    """Centre on a width x height canvas of ``color``; shrinks (never enlarges) to fit."""
    box = (p["width"], p["height"])
    rgba = ImageColor.getrgb(p["color"])
    if len(rgba) == 4 and rgba[3] < 255 and im.mode in ("RGB", "L"):
        im = im.convert(im.mode + "A")  # a see-through background needs an alpha band
    if im.width > box[0] or im.height > box[1]:
        im = ImageOps.contain(im, box, _LANCZOS)
    canvas = Image.new(im.mode, box, ImageColor.getcolor(p["color"], im.mode))
    canvas.paste(im, ((box[0] - im.width) // 2, (box[1] - im.height) // 2))
    return canvas


@op(
    "crop",
    check=_check_crop,
    left=_fraction(0.0),
    top=_fraction(0.0),
    right=_fraction(1.0),
    bottom=_fraction(1.0),
    aspect=Param(str, None, max_len=9, check=_check_aspect),
)
def _crop(im: Image.Image, p: Params) -> Image.Image:
    """Keep the box given as fractions of width/height, then a centred ``aspect`` (W:H) in it."""
    left, right = round(p["left"] * im.width), round(p["right"] * im.width)
    top, bottom = round(p["top"] * im.height), round(p["bottom"] * im.height)
    right, bottom = max(right, left + 1), max(bottom, top + 1)
    if p["aspect"]:
        left, top, right, bottom = _centered_aspect(
            (left, top, right, bottom), _parse_aspect(p["aspect"])
        )
    if (left, top, right, bottom) == (0, 0, im.width, im.height):
        return im
    return im.crop((left, top, right, bottom))


def _centered_aspect(box: tuple[int, int, int, int], ratio: float) -> tuple[int, int, int, int]:
    """Largest box of width/height ``ratio`` centred in ``box``."""
    left, top, right, bottom = box
    w, h = right - left, bottom - top
    if w / h > ratio:
        new_w, new_h = max(1, round(h * ratio)), h
    else:
        new_w, new_h = w, max(1, round(w / ratio))
    left, top = left + (w - new_w) // 2, top + (h - new_h) // 2
    return left, top, left + new_w, top + new_h


# ---- tone and colour ----------------------------------------------------------------------


@tone_op("brightness", amount=_amount(-100, 100, 0))
def _brightness(p: Params, mean_luma: Callable[[], float]) -> list[int] | None:
    """Scale every colour value by 1 + amount/100 (as ImageEnhance.Brightness)."""
    if p["amount"] == 0:
        return None
    f = _factor(p["amount"])
    return [_clip(v * f) for v in range(256)]


@tone_op("contrast", amount=_amount(-100, 100, 0))
def _contrast(p: Params, mean_luma: Callable[[], float]) -> list[int] | None:
    """Stretch values away from the mean luminance by 1 + amount/100 (as ImageEnhance)."""
    if p["amount"] == 0:
        return None
    f = _factor(p["amount"])
    mean = int(mean_luma() + 0.5)
    return [_clip(mean + f * (v - mean)) for v in range(256)]


# ITU-R 601 luma weights, as Pillow's convert("L")
_LUMA = (0.299, 0.587, 0.114)


@pixel_op("saturation", amount=_amount(-100, 100, 0))
def _saturation(pixels: Pixels, p: Params) -> Pixels:
    """Blend away from (or towards) the grey version by 1 + amount/100; -100 is greyscale."""
    if p["amount"] == 0 or filters.is_grey(pixels):
        return pixels
    # one colour-matrix pass instead of ImageEnhance's grey copy, RGB copy and blend
    f = _factor(p["amount"])
    rows = [[(1 - f) * w + (f if col == row else 0) for col, w in enumerate(_LUMA)]
            for row in range(3)]
    return filters.color_matrix(pixels, rows)


@pixel_op("grayscale")
def _grayscale(pixels: Pixels, p: Params) -> Pixels:
    return filters.luma(pixels)


@pixel_op(
    "colorize",
    dark=Param(str, "#000000", check=_check_color),
    light=Param(str, "#ffffff", check=_check_color),
)
def _colorize(pixels: Pixels, p: Params) -> Pixels:
    """Map luminance onto a dark..light colour ramp (sepia, cyanotype ...)."""
    return filters.grey_to_colour(filters.luma(pixels), _ramp(p["dark"], p["light"]))


@lru_cache(maxsize=32)
def _ramp(dark: str, light: str) -> list[int]:
    """ImageOps.colorize's colour for each grey level, as a 768-entry palette."""
    greys = Image.frombytes("L", (256, 1), bytes(range(256)))
    return list(ImageOps.colorize(greys, dark, light).tobytes())


# ---- detail -------------------------------------------------------------------------------


@pixel_op("sharpen", amount=_amount(0, 10, 3))
def _sharpen(pixels: Pixels, p: Params) -> Pixels:
    """Unsharp mask, radius 2 px, strength 30% per unit of amount (Pillow's UnsharpMask)."""
    if p["amount"] == 0:
        return pixels
    percent = round(p["amount"] * 30)
    return filters.unsharp_mask(pixels, _BLUR_SIGMA, _correction_lut(percent))


_BLUR_SIGMA = 2.0
_THRESHOLD = 2


@lru_cache(maxsize=16)
def _correction_lut(percent: int) -> list[int]:
    """As Pillow's unsharp mask: difference x percent / 100, truncated, above the threshold."""
    lut = []
    for stored in range(256):
        diff = stored - filters.MID
        step = int(diff * percent / 100) if abs(diff) > _THRESHOLD else 0
        lut.append(max(0, min(255, filters.MID + step)))
    return lut


@pixel_op("denoise", strength=_amount(0, 10, 2))
def _denoise(pixels: Pixels, p: Params) -> Pixels:
    """Smooth flat areas with a light Gaussian blur while keeping edges crisp."""
    strength = p["strength"]
    if strength == 0:
        return pixels
    # A median filter would preserve edges too, but costs ~1 s per 5 MP; an edge mask over a
    # Gaussian blur is many times faster and looks much the same on photo noise.
    sigma = 0.5 + 0.15 * strength
    weight = min(1.0, 0.2 + 0.08 * strength)
    # edges of the blurred luma: noise is already gone there, real edges remain
    return filters.smooth_flat_areas(pixels, sigma, _flat_area_weights(weight))


@lru_cache(maxsize=16)
def _flat_area_weights(weight: float) -> list[int]:
    """The blur's share (of 255) for each edge strength: all of ``weight`` where flat."""
    return [_clip(weight * max(0, 255 - 4 * v)) for v in range(256)]


# ---- overlays -----------------------------------------------------------------------------


@lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


@op(
    "watermark_text",
    text=Param(str, max_len=100, check=_check_text),
    opacity=_fraction(0.5),
    position=Param(str, "bottom_right", choices=POSITIONS),
    size=Param(float, 0.04, lo=0.01, hi=0.5),
    color=Param(str, "#ffffff", check=_check_color),
)
def _watermark_text(im: Image.Image, p: Params) -> Image.Image:
    """Draw ``text`` with font height ``size`` x image width at ``position``, ``opacity`` 0..1."""
    margin = max(1, round(0.02 * min(im.size)))
    font_px = round(p["size"] * im.width)
    overlay = _text_overlay(p["text"], p["color"], p["opacity"], font_px)
    room = max(1, im.width - 2 * margin)
    # long text on a narrow image: shrink until it fits instead of being cut off
    while overlay.width > room and font_px > _MIN_FONT_PX:
        font_px = max(_MIN_FONT_PX, min(font_px - 1, font_px * room // overlay.width))
        overlay = _text_overlay(p["text"], p["color"], p["opacity"], font_px)
    x, y = _place(im.size, overlay.size, p["position"], margin)
    box = (x, y, x + overlay.width, y + overlay.height)
    region = im.crop(box).convert("RGBA")
    region.alpha_composite(overlay)
    out = im.copy()
    out.paste(region.convert(im.mode), box)
    return out


def _text_overlay(text: str, color: str, opacity: float, font_px: int) -> Image.Image:
    """RGBA image just large enough for the text, with a contrasting outline for legibility."""
    font = _font(max(_MIN_FONT_PX, font_px))
    stroke = max(1, font_px // 18)
    left, top, right, bottom = (int(v) for v in font.getbbox(text, stroke_width=stroke))
    overlay = Image.new("RGBA", (max(1, right - left), max(1, bottom - top)))
    rgb = ImageColor.getrgb(color)[:3]
    outline = (0, 0, 0) if sum(rgb) > 382 else (255, 255, 255)
    ImageDraw.Draw(overlay).text(
        (-left, -top), text, font=font, fill=(*rgb, 255), stroke_width=stroke, stroke_fill=outline
    )
    alpha = overlay.getchannel("A").point([round(a * opacity) for a in range(256)])
    overlay.putalpha(alpha)
    return overlay


def _place(
    size: tuple[int, int], mark: tuple[int, int], position: str, margin: int
) -> tuple[int, int]:
    (w, h), (mw, mh) = size, mark
    xs = {"left": margin, "right": w - mw - margin, "center": (w - mw) // 2}
    ys = {"top": margin, "bottom": h - mh - margin, "center": (h - mh) // 2}
    vertical, _, horizontal = position.partition("_")
    x, y = xs[horizontal or "center"], ys[vertical]
    return max(0, x), max(0, y)


# ---- output -------------------------------------------------------------------------------

# Encoding is terminal (returns bytes), so the pipeline runs it; only its params live here.
# optimize: JPEG Huffman tables fitted to the image, a few percent smaller for one more pass.
OPS["encode"] = OpSpec(
    {
        "format": Param(str, "jpeg", choices=FORMATS),
        "quality": Param(int, 90, lo=1, hi=100),
        "optimize": Param(bool, True),
    },
    None,
)
