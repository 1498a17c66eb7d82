"""Shared fixtures for the imaging tests: real photos from the corpus and byte encoders."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

PHOTOS = Path(__file__).resolve().parents[2] / "fixtures" / "corpus" / "photos"


@pytest.fixture(scope="session")
def photo() -> Callable[[str], Image.Image]:
    """Load a corpus photo as an RGB image (a fresh copy each call)."""

    def load(name: str) -> Image.Image:
        with Image.open(PHOTOS / name) as im:
            return im.convert("RGB")

    return load


@pytest.fixture(scope="session")
def to_bytes() -> Callable[..., bytes]:
    """Encode an image to bytes in a Pillow format, passing save options through."""

    def encode(im: Image.Image, fmt: str, **options: Any) -> bytes:
        buf = io.BytesIO()
        im.save(buf, fmt, **options)
        return buf.getvalue()

    return encode


@pytest.fixture(scope="session")
def chelsea_jpeg(photo: Callable[[str], Image.Image], to_bytes: Callable[..., bytes]) -> bytes:
    return to_bytes(photo("chelsea.png"), "JPEG", quality=92)
