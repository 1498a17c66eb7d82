"""Neighbourhood filters and colour matrices on OpenCV, with Pillow's arithmetic.

Pillow's Gaussian blur, 3x3 convolution and colour matrix are scalar loops: its unsharp mask
takes about half a second on a 12 MP photo. OpenCV's are vectorised and give the same pixels
to within a level, three to four times faster (docs/performance.md, Image engine).
Images come and go as Pillow images in mode L or RGB. cv2 and numpy are imported on first use:
only the item worker runs filters, and only its function carries the imaging layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

from PIL import Image

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Pixels = npt.NDArray[np.uint8]

_MID = 128  # differences and corrections are stored around mid-grey, as 8-bit values
# Pillow's FIND_EDGES kernel: the centre against its eight neighbours
_EDGE_KERNEL = ((-1, -1, -1), (-1, 8, -1), (-1, -1, -1))


@cache
def _cv2() -> Any:
    import cv2

    # An item worker has one vCPU (1769 MB); a batch runs its items in parallel environments,
    # so more threads would only contend for it.
    cv2.setNumThreads(1)
    return cv2


def _pixels(im: Image.Image) -> Pixels:
    import numpy as np

    return np.asarray(im)


def _image(pixels: Pixels, mode: str) -> Image.Image:
    return Image.fromarray(pixels, mode)


def _lut(values: Sequence[int]) -> Pixels:
    import numpy as np

    return np.array(values, dtype=np.uint8)


def gaussian_blur(pixels: Pixels, sigma: float) -> Pixels:
    """Pillow's GaussianBlur(sigma): the edge pixels repeat beyond the border, as in Pillow."""
    cv2 = _cv2()
    blurred: Pixels = cv2.GaussianBlur(pixels, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
    return blurred


def unsharp_mask(im: Image.Image, sigma: float, correction: Sequence[int]) -> Image.Image:
    """``im`` plus ``correction`` of each band's difference from its blur.

    ``correction`` maps each difference, stored as 128 + difference, to 128 + the amount
    to add: Pillow's percentage and threshold, as one table. (Sharpening the luma alone would
    save a third of the time, but moves strongly coloured edges by several levels.)
    """
    cv2 = _cv2()
    pixels = _pixels(im)
    difference = cv2.addWeighted(pixels, 1.0, gaussian_blur(pixels, sigma), -1.0, _MID)
    added = cv2.LUT(difference, _lut(correction))
    return _image(cv2.addWeighted(pixels, 1.0, added, 1.0, -_MID), im.mode)


def smooth_flat_areas(im: Image.Image, sigma: float, mask_table: Sequence[int]) -> Image.Image:
    """Blend a Gaussian blur into ``im`` where its blurred luma has no edges.

    ``mask_table`` maps the edge strength (Pillow's FIND_EDGES of the blurred luma) to the
    blur's weight out of 255, as Image.composite reads its mask.
    """
    cv2 = _cv2()
    pixels = _pixels(im)
    smoothed = gaussian_blur(pixels, sigma)
    luma = cv2.cvtColor(smoothed, cv2.COLOR_RGB2GRAY) if im.mode == "RGB" else smoothed
    kernel = _edge_kernel()
    edges = cv2.filter2D(luma, -1, kernel, borderType=cv2.BORDER_REPLICATE)
    weight = cv2.LUT(edges, _lut(mask_table))
    smoothed_image = _image(smoothed, im.mode)
    return Image.composite(smoothed_image, im, _image(weight, "L"))


@cache
def _edge_kernel() -> Pixels:
    import numpy as np

    return np.array(_EDGE_KERNEL, dtype=np.float32)


def color_matrix(im: Image.Image, rows: Sequence[Sequence[float]]) -> Image.Image:
    """Each RGB pixel times the 3x3 matrix ``rows``, rounded and clipped as Pillow's convert."""
    import numpy as np

    matrix = np.array(rows, dtype=np.float32)
    return _image(_cv2().transform(_pixels(im), matrix), "RGB")
