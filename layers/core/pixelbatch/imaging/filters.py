"""Pixel ops on OpenCV, with Pillow's arithmetic: blur, unsharp mask, edge-aware smoothing,
colour matrix, lookup tables, a shrink; and JPEG read into and written from arrays.

Pillow's Gaussian blur, 3x3 convolution and colour matrix are scalar loops: its unsharp mask
takes about half a second on a 12 MP photo. OpenCV's are vectorised and give the same pixels
to within a level, three to four times faster (docs/performance.md, Image engine). They work
on numpy arrays of L (height x width) or RGB (height x width x 3) pixels; ``through_pixels``
moves a Pillow image in and out, once for a whole run of such ops. cv2 and numpy are imported
on first use: only the item worker runs pixels, and only its function carries the imaging layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

from PIL import Image

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Pixels = npt.NDArray[np.uint8]

_LANCZOS = Image.Resampling.LANCZOS
_LANCZOS_LOBES = 3
MID = 128  # differences and corrections are stored around mid-grey, as 8-bit values
# Pillow's FIND_EDGES kernel: the centre against its eight neighbours
_EDGE_KERNEL = ((-1, -1, -1), (-1, 8, -1), (-1, -1, -1))
# The histogram of an image above EXACT_PIXELS is read from every 8th pixel of every 8th row:
# the same mean luminance to about a tenth of a level (contrast rounds it to a whole one), for
# 1/64 of the work.
EXACT_PIXELS = 2_000_000
SAMPLE_STRIDE = 8
_COMPOSITE_ROWS = 256
_RESAMPLING_VARIANCE = 0.25 + 2 / 3  # wide_blur's area average down and bilinear up, in px²
WIDE_SIGMA = 2.0  # from here on wide_blur works at half resolution


@cache
def _cv2() -> Any:
    import cv2

    # An item worker has one vCPU (1769 MB); a batch runs its items in parallel environments,
    # so more threads would only contend for it.
    cv2.setNumThreads(1)
    return cv2


def through_pixels(im: Image.Image, run: Callable[[Pixels], Pixels]) -> Image.Image:
    """``run`` on the colour bands of ``im`` as an array; transparency is kept as it was."""
    alpha = im.getchannel("A") if im.mode in ("RGBA", "LA") else None
    colour = im.convert(im.mode[:-1]) if alpha is not None else im
    out = to_image(run(to_pixels(colour)))
    if alpha is not None:
        out.putalpha(alpha if alpha.size == out.size else alpha.resize(out.size, _LANCZOS))
    return out


def to_pixels(im: Image.Image) -> Pixels:
    """An L or RGB image's pixels as an array."""
    import numpy as np

    return np.asarray(im)


def to_image(pixels: Pixels) -> Image.Image:
    return Image.fromarray(pixels, mode_of(pixels))


# ---- JPEG in and out ------------------------------------------------------------------------
# OpenCV's codec is the same libjpeg-turbo as Pillow's, with the same settings: the same pixels
# and the same bytes. It reads into and writes from an array without Pillow's 4-byte pixel
# layout or a conversion: on 12 MP photos about 5% off basic_clean, 15% off hdr_tone.

_ICC_MARKER = b"\xff\xe2"
_ICC_HEADER = b"ICC_PROFILE\0"
_ICC_CHUNK = 65519  # a marker holds 65533 bytes, less the header and the chunk numbering
# Each EXIF orientation (2..8) as what makes the stored pixels upright, the same transposes
# as ImageOps.exif_transpose: (flip the rows, flip the columns, swap the axes first).
_ORIENT: dict[int, tuple[bool, bool, bool]] = {
    2: (False, True, False), 3: (True, True, False), 4: (True, False, False),
    5: (False, False, True), 6: (False, True, True), 7: (True, True, True),
    8: (True, False, True),
}


def decode_jpeg(data: bytes, *, grey: bool, bgr_backed: bool = False) -> Pixels | None:
    """A JPEG's pixels as stored (orientation not applied): L if ``grey``, otherwise RGB.
    None if OpenCV cannot read it.

    ``bgr_backed``: the RGB pixels as a view, in reverse band order, of the BGR array OpenCV
    decodes to, for steps that treat every band alike; the JPEG encoder then takes that array
    as it is, without a conversion pass (about 6% of basic_clean)."""
    import numpy as np

    cv2 = _cv2()
    colour = cv2.IMREAD_COLOR if bgr_backed else cv2.IMREAD_COLOR_RGB
    flags = (cv2.IMREAD_GRAYSCALE if grey else colour) | cv2.IMREAD_IGNORE_ORIENTATION
    pixels: Pixels | None = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    if pixels is None or grey or not bgr_backed:
        return pixels
    return pixels[..., ::-1]


def _bgr_backing(pixels: Pixels) -> Pixels | None:
    """The contiguous BGR array that ``pixels`` views in reverse band order, if it is one."""
    if pixels.ndim != 3 or pixels.strides[2] >= 0:
        return None
    stored = pixels[..., ::-1]
    return stored if stored.flags.c_contiguous else None


def upright(pixels: Pixels, orientation: int) -> Pixels:
    """The pixels turned upright for an EXIF orientation tag."""
    import numpy as np

    if orientation not in _ORIENT:
        return pixels
    stored = _bgr_backing(pixels)
    if stored is not None:  # turn the BGR array, and view it as RGB again
        return upright(stored, orientation)[..., ::-1]
    flip_rows, flip_columns, swap = _ORIENT[orientation]
    if swap:
        pixels = pixels.swapaxes(0, 1)
    if flip_rows:
        pixels = pixels[::-1]
    if flip_columns:
        pixels = pixels[:, ::-1]
    return np.ascontiguousarray(pixels)


def encode_jpeg(pixels: Pixels, quality: int, *, optimize: bool, icc_profile: bytes | None
                ) -> bytes:
    """Baseline JPEG with 4:2:0 chroma, as Pillow saves it, with the ICC profile if given."""
    cv2 = _cv2()
    stored = pixels if is_grey(pixels) else _bgr_backing(pixels)
    if stored is None:
        stored = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_OPTIMIZE, int(optimize)]
    ok, encoded = cv2.imencode(".jpg", stored, params)
    if not ok:
        raise ValueError("JPEG encoding failed")
    data = encoded.tobytes()
    return _with_icc(data, icc_profile) if icc_profile else data


def _with_icc(jpeg: bytes, profile: bytes) -> bytes:
    """The profile in APP2 markers right after the JFIF header, where Pillow writes them."""
    at = 2  # after SOI, and after the JFIF header (APP0) if there is one
    if jpeg[2:4] == b"\xff\xe0":
        at += 2 + int.from_bytes(jpeg[4:6], "big")
    chunks = [profile[i : i + _ICC_CHUNK] for i in range(0, len(profile), _ICC_CHUNK)]
    markers = b"".join(
        _ICC_MARKER + (len(chunk) + 16).to_bytes(2, "big") + _ICC_HEADER
        + bytes((number, len(chunks))) + chunk
        for number, chunk in enumerate(chunks, start=1)
    )
    return jpeg[:at] + markers + jpeg[at:]


def is_grey(pixels: Pixels) -> bool:
    return pixels.ndim == 2


def mode_of(pixels: Pixels) -> str:
    """The Pillow mode of these pixels: L or RGB."""
    return "L" if is_grey(pixels) else "RGB"


def _table(values: Sequence[int]) -> Pixels:
    import numpy as np

    return np.array(values, dtype=np.uint8)


def apply_lut(pixels: Pixels, lut: Sequence[int], *, in_place: bool = False) -> Pixels:
    """The same 256-entry table on every band; ``in_place`` writes it over ``pixels`` when
    they may be written (a 12 MP photo then needs no second 36 MB array)."""
    stored = _bgr_backing(pixels)
    if stored is not None:  # the table is the same for every band: the order does not matter
        return apply_lut(stored, lut, in_place=in_place)[..., ::-1]
    into = pixels if in_place and pixels.flags.writeable else None
    result: Pixels = _cv2().LUT(pixels, _table(lut), dst=into)
    return result


def histogram(pixels: Pixels) -> list[int]:
    """Pillow's Image.histogram() layout (256 counts per band), of a sample of a large image."""
    import numpy as np

    if pixels.shape[0] * pixels.shape[1] > EXACT_PIXELS:
        pixels = pixels[::SAMPLE_STRIDE, ::SAMPLE_STRIDE]
    bands = [pixels] if is_grey(pixels) else [pixels[..., band] for band in range(3)]
    counts: list[int] = []
    for band in bands:
        counts.extend(np.bincount(band.ravel(), minlength=256).tolist())
    return counts


def gaussian_blur(pixels: Pixels, sigma: float) -> Pixels:
    """Pillow's GaussianBlur(sigma): the edge pixels repeat beyond the border, as in Pillow."""
    cv2 = _cv2()
    blurred: Pixels = cv2.GaussianBlur(pixels, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
    return blurred


def wide_blur(pixels: Pixels, sigma: float) -> Pixels:
    """A Gaussian blur of ``sigma``, from WIDE_SIGMA up computed at half the resolution: a
    2x2 area average, the rest of the blur there, and bilinear back up; their variances add up
    to sigma squared (1/4 and 2/3 of a pixel squared for the two resamplings). Within a fifth
    of a level of the full-resolution blur at sigma 2, in 60% of its time. A narrower blur
    stays at full resolution: the resamplings alone would blur more than it asks."""
    if sigma < WIDE_SIGMA:
        return gaussian_blur(pixels, sigma)
    cv2 = _cv2()
    height, width = pixels.shape[:2]
    half = cv2.resize(pixels, ((width + 1) // 2, (height + 1) // 2),
                      interpolation=cv2.INTER_AREA)
    rest = math.sqrt(sigma * sigma - _RESAMPLING_VARIANCE) / 2
    blurred = cv2.GaussianBlur(half, (0, 0), rest, borderType=cv2.BORDER_REPLICATE)
    result: Pixels = cv2.resize(blurred, (width, height), interpolation=cv2.INTER_LINEAR)
    return result


def unsharp_mask(pixels: Pixels, sigma: float, correction: Sequence[int]) -> Pixels:
    """``pixels`` plus ``correction`` of each band's difference from its blur (``wide_blur``).

    ``correction`` maps each difference, stored as 128 + difference, to 128 + the amount
    to add: Pillow's percentage and threshold, as one table. (Sharpening the luma alone would
    save a third of the time, but moves strongly coloured edges by several levels.)
    """
    cv2 = _cv2()
    difference = cv2.addWeighted(pixels, 1.0, wide_blur(pixels, sigma), -1.0, MID)
    added = apply_lut(difference, correction, in_place=True)
    result: Pixels = cv2.addWeighted(pixels, 1.0, added, 1.0, -MID)
    return result


def smooth_flat_areas(pixels: Pixels, sigma: float, weights: Sequence[int]) -> Pixels:
    """Blend a Gaussian blur into ``pixels`` where its blurred luma has no edges.

    ``weights`` maps the edge strength (Pillow's FIND_EDGES of the blurred luma) to the
    blur's weight out of 255, as Image.composite reads its mask.
    """
    cv2 = _cv2()
    smoothed = gaussian_blur(pixels, sigma)
    edges = cv2.filter2D(luma(smoothed), -1, _edge_kernel(), borderType=cv2.BORDER_REPLICATE)
    return _composite(smoothed, pixels, apply_lut(edges, weights))


def _composite(first: Pixels, second: Pixels, mask: Pixels) -> Pixels:
    """Image.composite: ``first`` where the mask is 255, ``second`` where it is 0.

    As ``second + (first - second) * mask / 255``, rounded: Pillow's pixels exactly. Done in
    bands of rows, so that the 16-bit intermediates of a 50 MP photo never all exist at once.
    """
    import numpy as np

    cv2 = _cv2()
    result = np.empty_like(second)
    for top in range(0, second.shape[0], _COMPOSITE_ROWS):
        rows = slice(top, top + _COMPOSITE_ROWS)
        weights = mask[rows] if is_grey(second) else cv2.cvtColor(mask[rows], cv2.COLOR_GRAY2RGB)
        difference = cv2.subtract(first[rows], second[rows], dtype=cv2.CV_16S)
        step = cv2.multiply(difference, weights, scale=1 / 255, dtype=cv2.CV_16S)
        result[rows] = cv2.add(second[rows], step, dtype=cv2.CV_8U)
    return result


@cache
def _edge_kernel() -> Pixels:
    import numpy as np

    return np.array(_EDGE_KERNEL, dtype=np.float32)


def shrink(pixels: Pixels, size: tuple[int, int]) -> Pixels:
    """Downscale to ``size``: Pillow's Lanczos kernel at the scale as a low-pass, then bicubic
    sampling. Pillow's Lanczos resize to about a fifth of a level on a phone photo, under a
    level on fine texture, and three to four times faster. (OpenCV's Lanczos sampling would
    halve the difference and cost as much as Pillow's resize.)"""
    cv2 = _cv2()
    height, width = pixels.shape[:2]
    low = cv2.sepFilter2D(
        pixels, -1, _lanczos_kernel(round(width / size[0], 3)),
        _lanczos_kernel(round(height / size[1], 3)), borderType=cv2.BORDER_REPLICATE,
    )
    result: Pixels = cv2.resize(low, size, interpolation=cv2.INTER_CUBIC)
    return result


@cache
def _lanczos_kernel(scale: float) -> npt.NDArray[np.float32]:
    """Lanczos-3 stretched by ``scale`` (at least 1), sampled at whole pixels, summing to 1."""
    import numpy as np

    scale = max(scale, 1.0)
    reach = math.ceil(_LANCZOS_LOBES * scale)
    x = np.arange(-reach, reach + 1, dtype=np.float64) / scale
    weights = np.where(np.abs(x) < _LANCZOS_LOBES, np.sinc(x) * np.sinc(x / _LANCZOS_LOBES), 0.0)
    kernel: npt.NDArray[np.float32] = (weights / weights.sum()).astype(np.float32)
    return kernel


def color_matrix(pixels: Pixels, rows: Sequence[Sequence[float]]) -> Pixels:
    """Each RGB pixel times the 3x3 matrix ``rows``, rounded and clipped as Pillow's convert."""
    import numpy as np

    result: Pixels = _cv2().transform(pixels, np.array(rows, dtype=np.float32))
    return result


def luma(pixels: Pixels) -> Pixels:
    """ITU-R 601 luma, as Pillow's convert("L")."""
    if is_grey(pixels):
        return pixels
    cv2 = _cv2()
    result: Pixels = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
    return result


def grey_to_colour(grey: Pixels, palette: Sequence[int]) -> Pixels:
    """Each grey level to its colour in ``palette`` (768 values: R, G, B per level)."""
    cv2 = _cv2()
    bands = [apply_lut(grey, palette[band::3]) for band in range(3)]
    result: Pixels = cv2.merge(bands)
    return result
