"""Still images through Pillow: RGB uint8 out whatever went in (EXIF orientation, grey, 16-bit, CMYK, alpha)."""
from __future__ import annotations

import io
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from curate.core.files import atomic_path
from curate.media.checks import MAX_PIXELS, MediaError, check_file


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image as uint8 RGB [H, W, 3]: EXIF orientation applied; grey, 16-bit, CMYK, palette, alpha converted.

    Transparent pixels are composited onto white; animated images give their first frame.
    """
    check_file(path)
    return _decode(path)[0]


def probe_image(path: str | os.PathLike, kind: str, size: int, data: bytes | None = None):
    """The Probe of an image: the displayed size after EXIF orientation; every byte is decoded to check it (large
    JPEGs at 1/8 DCT scale: all entropy-coded data is still read), nothing is converted.

    data: the file's bytes when the caller holds them already (a crawler's body); path then only names it in errors.
    """
    from curate.media.video import Probe

    with _opened(path, data) as img:
        fmt, (w, h) = (img.format or "").lower(), img.size
        if fmt == "jpeg" and min(w, h) >= 512:
            img.draft(img.mode, (w // 8, h // 8))
        img.load()
        if img.getexif().get(0x0112) in (5, 6, 7, 8):   # EXIF orientations that turn the image a quarter
            w, h = h, w
    return Probe("image", w, h, None, 1, None, fmt or kind, size, container=fmt or kind)


def _decode(path) -> tuple[np.ndarray, str]:
    from PIL import ImageOps

    with _opened(path, None) as img:
        fmt = (img.format or "").lower()
        img.load()
        return _to_rgb(ImageOps.exif_transpose(img)), fmt


@contextmanager
def _opened(path, data: bytes | None):
    """A Pillow image of path (or of data) within the pixel cap; Pillow's errors become MediaErrors."""
    from PIL import Image

    try:
        with Image.open(path if data is None else io.BytesIO(data)) as img:
            if img.width * img.height > MAX_PIXELS:
                raise MediaError("too_big", f"{img.width}x{img.height} image exceeds {MAX_PIXELS} pixels", path)
            yield img
    except Image.DecompressionBombError as exc:
        raise MediaError("too_big", str(exc), path) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        code = "truncated" if "truncated" in str(exc).lower() else "undecodable"
        raise MediaError(code, f"cannot decode image: {exc}", path) from exc


def _to_rgb(img) -> np.ndarray:
    from PIL import Image

    if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey: keep the top 8 bits, not a clipped 0..255
        grey = np.asarray(img).astype(np.float64)
        top = 65535.0 if grey.max() > 255 else 255.0
        return np.repeat((grey * (255.0 / top)).round().astype(np.uint8)[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return np.asarray(img.convert("RGB"))


def write_image(path: str | os.PathLike, image: np.ndarray, quality: int = 90) -> Path:
    """Write a uint8 RGB (or grey) array as JPEG/PNG/WebP (by extension), atomically."""
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(image, dtype=np.uint8)).save(tmp, quality=quality)
    return path
