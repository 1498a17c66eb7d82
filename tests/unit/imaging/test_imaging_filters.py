"""The OpenCV filters give Pillow's pixels: the same blur, unsharp mask, edge-aware smoothing
and colour matrix, on average within a level, on real photos. (Pillow's Gaussian is three box
passes, OpenCV's a sampled Gaussian; the two differ by up to about half a level on texture.)"""
from __future__ import annotations

from collections.abc import Callable

import pytest
from PIL import Image, ImageChops, ImageFilter, ImageStat
from pixelbatch.imaging import filters
from pixelbatch.imaging.ops import _correction_lut, _flat_area_weights

from tests.support.reference_imaging import _smooth_flat_areas

Photo = Callable[[str], Image.Image]
PHOTOS = ["astronaut.png", "rocket.jpg", "gravel.png"]  # a portrait, a scene, fine texture
LIMIT = 0.75  # mean absolute difference, worst band, levels of 0..255


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    """The worst band's mean absolute difference, in levels of 0..255."""
    assert (a.mode, a.size) == (b.mode, b.size)
    return max(ImageStat.Stat(ImageChops.difference(a, b)).mean)


@pytest.mark.parametrize("name", PHOTOS)
@pytest.mark.parametrize("mode", ["L", "RGB"])
@pytest.mark.parametrize("sigma", [0.8, 2.0])
def test_gaussian_blur_is_pillows(photo: Photo, name: str, mode: str, sigma: float) -> None:
    im = photo(name).convert(mode)
    ours = Image.fromarray(filters.gaussian_blur(filters._pixels(im), sigma), mode)
    assert mean_difference(ours, im.filter(ImageFilter.GaussianBlur(sigma))) < LIMIT


@pytest.mark.parametrize("name", PHOTOS)
@pytest.mark.parametrize("mode", ["L", "RGB"])
@pytest.mark.parametrize("percent", [60, 150])
def test_unsharp_mask_is_pillows(photo: Photo, name: str, mode: str, percent: int) -> None:
    im = photo(name).convert(mode)
    ours = filters.unsharp_mask(im, 2.0, _correction_lut(percent))
    assert mean_difference(ours, im.filter(ImageFilter.UnsharpMask(2, percent, 2))) < LIMIT


@pytest.mark.parametrize("name", PHOTOS)
@pytest.mark.parametrize("mode", ["L", "RGB"])
@pytest.mark.parametrize("strength", [2, 6])
def test_smooth_flat_areas_is_the_reference(
    photo: Photo, name: str, mode: str, strength: float
) -> None:
    im = photo(name).convert(mode)
    sigma, weight = 0.5 + 0.15 * strength, min(1.0, 0.2 + 0.08 * strength)
    ours = filters.smooth_flat_areas(im, sigma, _flat_area_weights(weight))
    assert mean_difference(ours, _smooth_flat_areas(im, strength)) < LIMIT


@pytest.mark.parametrize("name", PHOTOS)
def test_color_matrix_is_pillows_convert(photo: Photo, name: str) -> None:
    im = photo(name)
    rows = [[0.6, 0.3, 0.1], [-0.2, 1.1, 0.1], [0.05, 0.05, 0.9]]
    matrix = tuple(v for row in rows for v in [*row, 0.0])
    theirs = im.convert("RGB", matrix)
    assert mean_difference(filters.color_matrix(im, rows), theirs) < 0.25  # rounding
