"""Decode an untrusted image, run a pipeline of ops on it and encode the result.

A pipeline is a list of steps ``{"name": str, "op": str, "params": {...}}``. A param value is
either a literal or a reference to the user's validated input: ``{"$input": "brightness",
"default": 0}``. The last step may be ``encode``; without one the output is JPEG quality 90.
"""

from __future__ import annotations

import contextlib
import io
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageOps, UnidentifiedImageError

from . import filters
from .failures import ItemFailure
from .ops import OPS, OpSpec, ToneFn, apply_tones, resize_target, resized, tones_on_pixels

if TYPE_CHECKING:
    from typing import TypeAlias

    from .filters import Pixels

    # What flows between passes: an image, or the L or RGB pixels of one as an array, which a
    # run of array ops leaves for the next pass (or the JPEG encoder) to take as it is.
    Frame: TypeAlias = Image.Image | Pixels

# Decided by content: Pillow only runs these parsers, never EPS/PDF (Ghostscript) or the like.
# MPO (multi-picture JPEG from cameras) is opened by the JPEG parser.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
DEFAULT_MAX_PIXELS = 50_000_000

# Pillow raises a zoo of exceptions on malformed data; all of them mean "cannot decode".
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, zlib.error)

_ALLOWED_MAGIC = (
    b"\xff\xd8\xff",  # JPEG / MPO
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a",
    b"GIF89a",
    b"BM",
    b"II*\x00",  # TIFF little/big endian, classic and BigTIFF
    b"MM\x00*",
    b"II+\x00",
    b"MM\x00+",
)
_OTHER_IMAGE_MAGIC = (
    b"%PDF-",
    b"%!PS",  # PostScript / EPS
    b"\xc5\xd0\xd3\xc6",  # DOS EPS
    b"8BPS",  # Photoshop
    b"\x00\x00\x01\x00",  # ICO
    b"\x00\x00\x02\x00",  # CUR
    b"\x00\x00\x00\x0cjP  \r\n\x87\n",  # JPEG 2000
    b"\xffO\xffQ",  # JPEG 2000 codestream
    b"\xff\n",  # JPEG XL codestream
    b"\x00\x00\x00\x0cJXL ",  # JPEG XL container
    b"qoif",
    b"DDS ",
    b"gimp xcf",
    b"v/1\x01",  # OpenEXR
    b"#?RADIANCE",
    b"icns",
)
_ISOBMFF_IMAGE_BRANDS = (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1", b"avif")

_OUTPUTS = {  # format -> (extension, content type)
    "jpeg": ("jpg", "image/jpeg"),
    "png": ("png", "image/png"),
    "webp": ("webp", "image/webp"),
}
_DEFAULT_ENCODE: dict[str, Any] = {"format": "jpeg", "quality": 90, "optimize": True}
_LUMA_OPS = ("grayscale", "colorize")  # ops that read nothing but an image's luminance
_UPRIGHT_OPS = ("auto_orient",)  # no-ops on a decoded image: orientation is applied by then
_TURNED = (5, 6, 7, 8)  # EXIF orientations that swap width and height
Shrink = Callable[[tuple[int, int]], tuple[int, int] | None]
_STEP_KEYS = {"name", "op", "params"}
_REF_KEYS = {"$input", "default"}
_ABSENT: Any = object()
_JPEG_END = b"\xff\xd9"


@dataclass(frozen=True)
class Rendered:
    data: bytes
    ext: str
    content_type: str
    width: int
    height: int


@dataclass(frozen=True)
class _Step:
    name: str
    spec: OpSpec
    params: dict[str, Any]


def run_pipeline(
    data: bytes,
    steps: list[dict[str, Any]],
    inputs: dict[str, Any],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Rendered:
    """Process one image; raises ItemFailure for anything the user can be told about."""
    try:
        plan = _bind_steps(steps, inputs, partial=False)
    except ValueError as e:
        raise ItemFailure.of("invalid_parameters", detail=str(e)) from e
    encode_params = plan.pop().params if plan[-1].spec.apply is None else _DEFAULT_ENCODE
    plan = [step for step in plan if step.spec not in _upright_specs()]
    luma = bool(plan) and plan[0].spec in _luma_specs()
    shrink = _leading_resize(plan)
    after_decode = plan[1:] if shrink is not None else plan
    fmt = encode_params["format"]
    frame, icc = _decode(data, max_pixels=max_pixels, luma=luma, shrink=shrink,
                         as_pixels=_starts_on_pixels(after_decode, fmt),
                         bgr_backed=fmt == "jpeg" and _band_blind(after_decode))
    if shrink is not None:
        _check_size(frame, plan[0].name, max_pixels)
    for name, apply in _passes(after_decode):
        frame = apply(frame)
        _check_size(frame, name, max_pixels)
    return encode(frame, encode_params["format"], encode_params["quality"], icc_profile=icc,
                  optimize=encode_params["optimize"])


def _starts_on_pixels(plan: list[_Step], fmt: str) -> bool:
    """Whether the first pass takes an array (or, with no pass, the JPEG encoder does)."""
    if not plan:
        return fmt == "jpeg"
    spec = plan[0].spec
    return spec.tone is not None or spec.pixels is not None


def _band_blind(plan: list[_Step]) -> bool:
    """Whether every step treats the bands alike (tone steps: one table for every band)."""
    return all(step.spec.tone is not None for step in plan)


def _size(frame: Frame) -> tuple[int, int]:
    if isinstance(frame, Image.Image):
        return frame.size
    return frame.shape[1], frame.shape[0]


def _image(frame: Frame) -> Image.Image:
    return frame if isinstance(frame, Image.Image) else filters.to_image(frame)


def _check_size(frame: Frame, step_name: str, max_pixels: int) -> None:
    width, height = _size(frame)
    if width * height > max_pixels:
        raise ItemFailure.of("invalid_parameters", detail=f"{step_name}: output too large")


def _specs(names: tuple[str, ...]) -> list[OpSpec]:
    return [OPS[name] for name in names]


def _upright_specs() -> list[OpSpec]:
    return _specs(_UPRIGHT_OPS)


def _luma_specs() -> list[OpSpec]:
    return _specs(_LUMA_OPS)


def _leading_resize(plan: list[_Step]) -> Shrink | None:
    """A first ``resize`` step, as the size it makes of an upright image of a given size."""
    if not plan or plan[0].spec is not OPS["resize"]:
        return None
    params = plan[0].params
    return lambda size: resize_target(size, params)


def _passes(plan: list[_Step]) -> Iterator[tuple[str, Pass]]:
    """One pass per step, except that consecutive tone steps share one lookup table, and a
    run of pixel ops (with tone steps among them) shares one array: the image is moved into
    numpy and back once for the whole run."""
    run: list[list[_Step]] = []
    for unit in [*_units(plan), []]:  # the empty unit ends the last run
        if unit and (unit[0].spec.tone is not None or unit[0].spec.pixels is not None):
            run.append(unit)
            continue
        if any(part[0].spec.pixels is not None for part in run):
            yield _names(step for part in run for step in part), _array_pass(run)
        else:
            yield from ((_names(part), _unit_pass(part)) for part in run)
        run = []
        if unit:
            yield _names(unit), _unit_pass(unit)


def _units(plan: list[_Step]) -> list[list[_Step]]:
    """The plan with consecutive tone steps grouped: each unit is one pass on its own."""
    units: list[list[_Step]] = []
    for step in plan:
        if step.spec.tone is not None and units and units[-1][0].spec.tone is not None:
            units[-1].append(step)
        else:
            units.append([step])
    return units


def _names(steps: Iterable[_Step]) -> str:
    return "+".join(step.name for step in steps)


Pass = Callable[["Frame"], "Frame"]


def _tones(unit: list[_Step]) -> list[tuple[ToneFn, Mapping[str, Any]]]:
    return [(step.spec.tone, step.params) for step in unit if step.spec.tone is not None]


def _unit_pass(unit: list[_Step]) -> Pass:
    """A unit on its own: tone steps as one table on an image or an array, or one Pillow op."""
    step = unit[0]
    if step.spec.tone is not None:
        tones = _tones(unit)
        return lambda frame: (
            apply_tones(frame, tones) if isinstance(frame, Image.Image)
            else tones_on_pixels(frame, tones)
        )
    apply = step.spec.apply
    assert apply is not None
    return lambda frame: apply(_image(frame), step.params)


def _array_pass(run: list[list[_Step]]) -> Pass:
    def on_pixels(pixels: Pixels) -> Pixels:
        for unit in run:
            step = unit[0]
            if step.spec.pixels is not None:
                pixels = step.spec.pixels(pixels, step.params)
            else:
                pixels = tones_on_pixels(pixels, _tones(unit))
        return pixels

    def apply(frame: Frame) -> Frame:
        if not isinstance(frame, Image.Image):
            return on_pixels(frame)
        if frame.mode in ("RGBA", "LA"):  # the array holds the colour; the alpha stays put
            return filters.through_pixels(frame, on_pixels)
        return on_pixels(filters.to_pixels(frame))

    return apply


def validate_steps(steps: list[dict[str, Any]]) -> None:
    """Raise ValueError if ``steps`` is not a valid pipeline (unknown op, bad params, ...)."""
    _bind_steps(steps, {}, partial=True)


# ---- steps --------------------------------------------------------------------------------


def _bind_steps(steps: object, inputs: Mapping[str, Any], *, partial: bool) -> list[_Step]:
    if not isinstance(steps, list) or not steps:
        raise ValueError("steps must be a non-empty list")
    plan: list[_Step] = []
    for index, step in enumerate(steps):
        name, spec, raw = _check_step(step, index, last=index == len(steps) - 1)
        if any(s.name == name for s in plan):
            raise ValueError(f"duplicate step name {name!r}")
        values = {k: _resolve(v, inputs) for k, v in raw.items()}
        given = {k: v for k, v in values.items() if v is not _ABSENT}
        try:
            bound = spec.bind(given, partial=partial)
        except ValueError as e:
            raise ValueError(f"step {name!r}: {e}") from e
        plan.append(_Step(name, spec, bound))
    return plan


def _check_step(step: object, index: int, *, last: bool) -> tuple[str, OpSpec, dict[str, Any]]:
    if not isinstance(step, dict) or not set(step) <= _STEP_KEYS or "op" not in step:
        raise ValueError(f"step {index} must be an object with name, op and params")
    name, op, params = step.get("name"), step["op"], step.get("params", {})
    if not isinstance(name, str) or not name:
        raise ValueError(f"step {index} needs a name")
    if op not in OPS:
        raise ValueError(f"step {name!r}: unknown op {op!r}")
    if not isinstance(params, dict):
        raise ValueError(f"step {name!r}: params must be an object")
    spec = OPS[op]
    if spec.apply is None and not last:
        raise ValueError(f"step {name!r}: {op} must be the last step")
    return name, spec, params


def _resolve(value: Any, inputs: Mapping[str, Any]) -> Any:
    """A literal, or the user's input (falling back to the reference's default)."""
    if not isinstance(value, dict):
        return value
    key = value.get("$input")
    if not isinstance(key, str) or not key or not set(value) <= _REF_KEYS:
        raise ValueError(f"bad input reference {value!r}")
    if inputs.get(key) is not None:
        return inputs[key]
    return value.get("default", _ABSENT)


# ---- decoding -----------------------------------------------------------------------------


def decode(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    luma: bool = False,
    shrink: Shrink | None = None,
) -> tuple[Image.Image, bytes | None]:
    """Decode to an upright RGB/RGBA image; also returns the source ICC profile, if any.

    ``luma``: only the luminance will be used, so a colour JPEG may decode straight to mode L.
    ``shrink``: the size wanted for an upright image of a given size; a JPEG decoder then
    scales down by 2, 4 or 8 in the DCT on the way, and a resize makes the exact size.
    """
    return _decode_opened(_open(data, max_pixels), luma=luma, shrink=shrink)


def _decode(
    data: bytes, *, max_pixels: int, luma: bool, shrink: Shrink | None, as_pixels: bool,
    bgr_backed: bool,
) -> tuple[Frame, bytes | None]:
    """``decode``, or straight to an upright array when the pipeline starts on one and the
    input is a JPEG that OpenCV reads exactly as Pillow does (``bgr_backed``: see
    ``filters.decode_jpeg``)."""
    im = _open(data, max_pixels)
    pixels = (_decode_pixels(im, data, luma=luma, shrink=shrink, bgr_backed=bgr_backed)
              if as_pixels else None)
    if pixels is None:
        return _decode_opened(im, luma=luma, shrink=shrink)
    return pixels, _icc(im)


def _decode_pixels(
    im: Image.ImageFile.ImageFile, data: bytes, *, luma: bool, shrink: Shrink | None,
    bgr_backed: bool,
) -> Pixels | None:
    """A plain, whole JPEG wanted at its own size, as L (``luma``) or RGB pixels; None for
    anything else. Whole: OpenCV reads a truncated JPEG as grey where Pillow rejects it, so
    it only gets data that ends as a JPEG ends (an image with anything after that goes to
    Pillow)."""
    if im.format != "JPEG" or im.mode not in ("RGB", "L") or not data.endswith(_JPEG_END):
        return None
    if shrink is not None and shrink(_upright_size(im)) is not None:
        return None
    pixels = filters.decode_jpeg(data, grey=luma, bgr_backed=bgr_backed)
    if pixels is None or pixels.shape[:2] != (im.height, im.width):
        return None
    return filters.upright(pixels, _orientation(im))


def _decode_opened(
    im: Image.ImageFile.ImageFile, *, luma: bool, shrink: Shrink | None
) -> tuple[Image.Image, bytes | None]:
    # drafts are JPEG-only; its orientation is known from the header, before decoding
    upright = _upright_size(im) if im.format == "JPEG" else None
    target = shrink(upright) if shrink is not None and upright is not None else None
    if upright is not None:
        _draft(im, luma, upright, target)
    try:
        im.load()
    except Image.DecompressionBombError as e:
        raise ItemFailure.of("too_many_pixels", detail=str(e)) from e
    except _DECODE_ERRORS as e:
        raise ItemFailure.of("corrupt_image", detail=f"{type(e).__name__}: {e}") from e
    icc = _icc(im)
    _apply_orientation(im)
    keep_luma = luma and im.mode == "L" and not im.has_transparency_data
    image = im if keep_luma else _normalize_mode(im)
    if shrink is not None and upright is None:
        target = shrink(image.size)
    if target is not None:
        image = resized(image, target)
    return image, icc


def _icc(im: Image.Image) -> bytes | None:
    """The source's ICC profile, if it carries one."""
    icc = im.info.get("icc_profile")
    return icc if isinstance(icc, bytes) else None


def _upright_size(im: Image.Image) -> tuple[int, int]:
    return (im.height, im.width) if _orientation(im) in _TURNED else im.size


def _draft(
    im: Image.ImageFile.ImageFile,
    luma: bool,
    upright: tuple[int, int],
    target: tuple[int, int] | None,
) -> None:
    """Ask the JPEG decoder for luma only, and for the smallest size not below the target."""
    stored = None
    if target is not None and target[0] < upright[0]:
        turned = upright != im.size
        stored = (target[1], target[0]) if turned else target
    if luma or stored is not None:
        im.draft("L" if luma else im.mode, stored)


def _orientation(im: Image.Image) -> int:
    with contextlib.suppress(*_DECODE_ERRORS):
        return int(im.getexif().get(0x0112, 1))
    return 1


def _open(data: bytes, max_pixels: int) -> Image.ImageFile.ImageFile:
    if not data:
        raise ItemFailure.of("not_an_image", detail="empty input")
    try:
        im = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ItemFailure.of("too_many_pixels", detail=str(e)) from e
    except UnidentifiedImageError as e:
        raise _classify_unreadable(data) from e
    except _DECODE_ERRORS as e:
        raise ItemFailure.of("corrupt_image", detail=f"{type(e).__name__}: {e}") from e
    # Pillow only warns between MAX_IMAGE_PIXELS and twice that; treat its limit as ours too.
    limit = min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels)
    if im.width * im.height > limit:
        raise ItemFailure.of("too_many_pixels", detail=f"{im.width}x{im.height}")
    return im


def _classify_unreadable(data: bytes) -> ItemFailure:
    head = data[:4096]
    if head.startswith(_ALLOWED_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return ItemFailure.of("corrupt_image", detail="header of an allowed format")
    if (
        head.startswith(_OTHER_IMAGE_MAGIC)
        or (head[4:8] == b"ftyp" and head[8:12] in _ISOBMFF_IMAGE_BRANDS)
        or _looks_like_svg(head)
    ):
        return ItemFailure.of("unsupported_format", detail=repr(head[:12]))
    return ItemFailure.of("not_an_image", detail=repr(head[:12]))


def _looks_like_svg(head: bytes) -> bool:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return text.startswith((b"<svg", b"<?xml", b"<!doctype svg")) and b"<svg" in text


def _apply_orientation(im: Image.Image) -> None:
    # unreadable EXIF: keep the pixels as stored rather than fail the image
    with contextlib.suppress(*_DECODE_ERRORS):
        ImageOps.exif_transpose(im, in_place=True)


def _normalize_mode(im: Image.Image) -> Image.Image:
    if im.mode in ("RGB", "RGBA"):
        return im
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        return _deep_to_rgb(im)
    try:
        return im.convert("RGBA" if im.has_transparency_data else "RGB")
    except ValueError as e:  # a mode Pillow can decode but not convert (e.g. LAB)
        raise ItemFailure.of("unsupported_format", detail=f"mode {im.mode}") from e


def _deep_to_rgb(im: Image.Image) -> Image.Image:
    # convert("L") clips 16-bit values at 255, turning most photos white; rescale instead
    if im.mode.startswith("I;16"):
        white: float = 65535
        im = im.convert("I")
    else:
        hi = float(im.getextrema()[1])  # type: ignore[arg-type]
        white = next((w for w in (1.0, 255.0, 65535.0) if hi <= w), hi)
        if im.mode == "I" and white == 1.0:
            white = 255.0
    scale = 255.0 / white
    return im.point(lambda v: v * scale).convert("L").convert("RGB")


# ---- encoding -----------------------------------------------------------------------------


def encode(
    frame: Frame,
    fmt: str,
    quality: int,
    *,
    icc_profile: bytes | None = None,
    optimize: bool = True,
) -> Rendered:
    """Encode without EXIF/XMP (orientation is already applied; location data must not leak)."""
    if not isinstance(frame, Image.Image):
        if fmt == "jpeg":
            return _encode_jpeg_pixels(frame, quality, icc_profile=icc_profile, optimize=optimize)
        frame = filters.to_image(frame)
    ext, content_type = _OUTPUTS[fmt]
    im = _output_mode(frame, fmt)
    im.info = {}  # nothing from the source (EXIF, XMP, comments) may ride along
    options: dict[str, Any] = {}
    if icc_profile and _icc_fits(icc_profile, im.mode):
        options["icc_profile"] = icc_profile
    buf = io.BytesIO()
    if fmt == "jpeg":
        im.save(buf, "JPEG", quality=quality, optimize=optimize, **options)
    elif fmt == "webp":
        im.save(buf, "WEBP", quality=quality, method=4, **options)
    else:
        # level 6 takes ~3x longer on photos for a few percent smaller files
        im.save(buf, "PNG", compress_level=3, **options)
    return Rendered(buf.getvalue(), ext, content_type, im.width, im.height)


def _encode_jpeg_pixels(
    pixels: Pixels, quality: int, *, icc_profile: bytes | None, optimize: bool
) -> Rendered:
    """The bytes Pillow would write for these pixels, without moving them into Pillow."""
    icc = icc_profile if icc_profile and _icc_fits(icc_profile, filters.mode_of(pixels)) else None
    data = filters.encode_jpeg(pixels, quality, optimize=optimize, icc_profile=icc)
    width, height = _size(pixels)
    ext, content_type = _OUTPUTS["jpeg"]
    return Rendered(data, ext, content_type, width, height)


def _output_mode(im: Image.Image, fmt: str) -> Image.Image:
    if fmt == "png":
        return im if im.mode in ("RGB", "RGBA", "L", "LA") else im.convert("RGBA")
    if im.mode in ("RGBA", "LA") and fmt == "jpeg":
        return _flatten_on_white(im)
    if im.mode == "L":
        return im if fmt == "jpeg" else im.convert("RGB")  # grayscale JPEG: one channel
    if im.mode == "LA":
        return im.convert("RGBA")
    return im


def _flatten_on_white(im: Image.Image) -> Image.Image:
    rgba = im.convert("RGBA")
    out = Image.new("RGB", rgba.size, (255, 255, 255))
    out.paste(rgba, mask=rgba.getchannel("A"))
    return out


def _icc_fits(profile: bytes, mode: str) -> bool:
    # the colour space signature sits at bytes 16..20 of an ICC header
    space = profile[16:20]
    return space == b"RGB " if mode in ("RGB", "RGBA") else space == b"GRAY"
