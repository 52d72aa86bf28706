"""Reading and writing image files: every image a user has becomes uint8 RGB, and nothing is half-written."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
# A decompression bomb (a tiny file that claims a huge size) is refused from its header, before decoding.
DEFAULT_MAX_PIXELS = 64_000_000


class ImageError(ValueError):
    """A file that cannot be used as an image; the message names the file and the reason."""


def is_image_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def find_images(folder: str | os.PathLike) -> list[Path]:
    """Image files below `folder` (recursive, sorted, symlink loops not followed)."""
    found = []
    for root, _dirs, files in os.walk(folder, followlinks=False):
        found.extend(Path(root) / f for f in files if is_image_path(f))
    return sorted(found)


def load_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decodes an image file to uint8 [H, W, 3] RGB.

    Grayscale and palette images become RGB, alpha is dropped (composited on black), 16-bit images are
    scaled to 8 bits, CMYK is converted, and the EXIF orientation is applied. Raises ImageError (a one-line
    message naming the file) for a missing, empty, truncated, non-image or over-`max_pixels` file.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise ImageError(f"{path}: {w}x{h} is more than the {max_pixels}-pixel limit")
            im = ImageOps.exif_transpose(im)
            return _to_rgb_uint8(im)
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a folder, not an image file") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not a readable image") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageError(f"{path}: cannot decode ({e})") from None


def decode_image_bytes(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Like load_image, for encoded bytes in memory."""
    import io

    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise ImageError(f"{w}x{h} is more than the {max_pixels}-pixel limit")
            return _to_rgb_uint8(ImageOps.exif_transpose(im))
    except ImageError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageError(f"not a readable image ({e})") from None


def _to_rgb_uint8(im: Image.Image) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        peak = 65535.0 if im.mode != "F" else max(float(a.max()), 1.0)
        a = np.clip(np.round(a * (255.0 / peak)), 0, 255).astype(np.uint8)
        return np.repeat(a[..., None], 3, axis=-1)
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA"):
        im = im.convert("RGBA")
        rgb = Image.new("RGB", im.size, (0, 0, 0))
        rgb.paste(im, mask=im.getchannel("A"))
        im = rgb
    if im.mode != "RGB":
        im = im.convert("RGB")
    a = np.asarray(im, dtype=np.uint8)
    if a.ndim != 3 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"decoded to an empty array of shape {a.shape}")
    return a


def atomic_write(path: str | os.PathLike, write) -> None:
    """Calls `write(tmp_path)` for a temporary file beside `path`, then renames it to `path`.

    Either the whole file appears under `path` or nothing does (the old file, if any, is kept).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; give it the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Writes a uint8 [H, W, 3] (or [H, W]) array; the format follows the extension. Atomic."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f"save_image wants uint8, got {image.dtype}")
    fmt = Image.registered_extensions().get(Path(path).suffix.lower())
    if fmt is None:
        raise ImageError(f"{path}: unknown image extension")
    atomic_write(path, lambda tmp: Image.fromarray(image).save(tmp, format=fmt))
