"""Reading and writing image files, and nothing half-written.

Two ways in:

- `load_image(path)`: any image as uint8 [H, W, 3] RGB (what training, evaluation and the MOS kit use).
- `read_image_file(path)` -> `ImageFile`, and `write_image_file(path, image)`: an image as it is in its file,
  so that an upscaled copy can go out as it came in: its bit depth (8 or 16), grayscale or colour, its alpha
  channel and its ICC profile. Palette images become RGB, or RGBA when they have transparency; CMYK, YCbCr
  and LAB become RGB; the EXIF orientation is applied.

16-bit colour: Pillow has no 16-bit colour mode (it opens a 16-bit RGB, RGBA or gray+alpha PNG as 8-bit RGB
or RGBA, keeping only the high byte), so such PNGs are decoded and encoded with TensorFlow's libpng
(`tf.io.decode_png` / `encode_png` with dtype uint16), which is lossless; the ICC profile is added as an
iCCP chunk. 16-bit colour TIFF cannot be read or written losslessly with Pillow alone: it is read as
8 bits, and a 16-bit colour result written as TIFF is written with 8 bits, each with an `ImageWarning`.
16-bit grayscale (Pillow's I;16 modes) is kept in every format that can hold it (PNG, TIFF).

Writing follows the extension (WRITE_FORMATS): PNG and TIFF keep everything; WebP is 8-bit colour (gray is
written as RGB); JPEG is 8-bit without alpha: a fully opaque alpha is dropped, real transparency is refused
with an ImageError (before any work is done, see `check_writable`). The ICC profile is written only where
its colour space (gray or RGB) is that of the written pixels, so a CMYK profile never labels RGB pixels.

Two array helpers that every LR/HR pairing shares: `crop_to_scale` (HR cropped to a multiple of the scale, as
the literature does before downscaling) and `nearest_upscale` (the "LR (nearest)" panels).
"""

from __future__ import annotations

import os
import struct
import tempfile
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
# What the upscaler reads from a folder: the above and TIFF.
READ_EXTENSIONS = (*IMAGE_EXTENSIONS, ".tif", ".tiff")
# Output extension -> Pillow format name.
WRITE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}
# A decompression bomb (a tiny file that claims a huge size) is refused from its header, before decoding.
DEFAULT_MAX_PIXELS = 64_000_000

_ORIENTATION_TAG = 0x0112
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ImageError(ValueError):
    """A file that cannot be used as an image; the message names the file and the reason."""


class ImageWarning(UserWarning):
    """A file that is read or written with less than it holds (e.g. 16-bit colour TIFF as 8 bits)."""


@dataclass
class ImageFile:
    """An image as its file holds it.

    `pixels` is [H, W, C] uint8 (8-bit files) or uint16 (16-bit files), C = 1 (grayscale) or 3 (RGB);
    `alpha` is None or [H, W] of the same dtype, straight (not premultiplied); `icc` is the ICC profile's
    bytes or None.
    """

    pixels: np.ndarray
    alpha: np.ndarray | None = None
    icc: bytes | None = None

    @property
    def bits(self) -> int:
        return 16 if self.pixels.dtype == np.uint16 else 8

    @property
    def gray(self) -> bool:
        return self.pixels.shape[2] == 1

    @property
    def mode(self) -> str:
        """L, LA, RGB or RGBA, with ';16' appended for 16-bit images (e.g. 'L;16', 'RGBA;16')."""
        base = ("L" if self.gray else "RGB") + ("A" if self.alpha is not None else "")
        return base + (";16" if self.bits == 16 else "")

    @property
    def has_transparency(self) -> bool:
        """True when some pixel is not fully opaque."""
        return self.alpha is not None and int(self.alpha.min()) < np.iinfo(self.alpha.dtype).max


def is_image_path(path: str | os.PathLike, extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> bool:
    return Path(path).suffix.lower() in extensions


def find_images(folder: str | os.PathLike, extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> list[Path]:
    """Image files (by extension) below `folder` (recursive, sorted, symlink loops not followed)."""
    found = []
    for root, _dirs, files in os.walk(folder, followlinks=False):
        found.extend(Path(root) / f for f in files if is_image_path(f, extensions))
    return sorted(found)


@contextmanager
def _opened(path: Path, max_pixels: int) -> Iterator[Image.Image]:
    """Image.open with every failure turned into a one-line ImageError naming the file."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise ImageError(f"{path}: {w}x{h} is more than the {max_pixels}-pixel limit")
            yield im
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


def load_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decodes an image file to uint8 [H, W, 3] RGB.

    Grayscale and palette images become RGB, alpha is dropped (composited on black), 16-bit images are
    scaled to 8 bits, CMYK is converted, and the EXIF orientation is applied. Raises ImageError (a one-line
    message naming the file) for a missing, empty, truncated, non-image or over-`max_pixels` file.
    """
    path = Path(path)
    with _opened(path, max_pixels) as im:
        return _to_rgb_uint8(ImageOps.exif_transpose(im))


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


# ---------------------------------------------------------------- ImageFile: reading


def read_image_file(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageFile:
    """Decodes an image file as an ImageFile (see the module docstring for what is kept).

    The EXIF orientation is applied. Raises ImageError (one line naming the file) for a missing, empty,
    truncated, non-image or over-`max_pixels` file; warns (ImageWarning) when Pillow can only read part
    of the file's precision.
    """
    path = Path(path)
    with _opened(path, max_pixels) as im:
        icc = im.info.get("icc_profile") or None
        try:
            orientation = int(im.getexif().get(_ORIENTATION_TAG, 1))
        except Exception:  # a corrupt EXIF block must not stop the image from being read
            orientation = 1
        pixels, alpha = _decode(im, path)
    if pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise ImageError(f"{path}: decoded to an empty image")
    pixels = _orient(pixels, orientation)
    alpha = None if alpha is None else _orient(alpha, orientation)
    return ImageFile(np.ascontiguousarray(pixels), None if alpha is None else np.ascontiguousarray(alpha), icc)


def _decode(im: Image.Image, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(pixels [H, W, C] uint8/uint16, alpha [H, W] or None) of an opened image."""
    if im.format == "PNG" and im.mode in ("RGB", "RGBA") and _png_bit_depth(path) == 16:
        a = _decode_png16(path)  # Pillow would keep only the high byte of each 16-bit sample
        pixels, alpha = (a, None) if a.shape[2] in (1, 3) else (a[..., :-1], a[..., -1])
        return pixels, alpha if alpha is not None else _keyed_alpha(pixels, im.info.get("transparency"))
    if im.format == "TIFF" and im.mode in ("RGB", "RGBA") and max(_tuple(im.tag_v2.get(258, 8))) > 8:
        warnings.warn(f"{path}: 16-bit colour TIFF is read with 8 bits (Pillow cannot decode more)",
                      ImageWarning, stacklevel=3)
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        pixels = np.asarray(im).astype(np.uint16)[..., None]
        return pixels, _keyed_alpha(pixels, im.info.get("transparency"))
    if mode == "I":
        return np.clip(np.asarray(im), 0, 65535).astype(np.uint16)[..., None], None
    if mode == "F":  # as load_image: values above 1 are scaled by the peak
        a = np.asarray(im, np.float64)
        a = a * (65535.0 / max(float(a.max()), 1.0))
        return np.clip(np.floor(a + 0.5), 0, 65535).astype(np.uint16)[..., None], None
    if mode in ("P", "PA"):
        im = im.convert("RGBA" if mode == "PA" or "transparency" in im.info else "RGB")
    elif mode == "1":
        im = im.convert("L")
    elif mode in ("La", "RGBa"):
        im = im.convert(mode.upper())
    elif mode not in ("L", "LA", "RGB", "RGBA"):  # CMYK, YCbCr, LAB, HSV, RGBX
        im = im.convert("RGB")
    a = np.asarray(im, dtype=np.uint8)
    if a.ndim == 2:
        a = a[..., None]
    if a.shape[2] in (2, 4):
        return a[..., :-1], a[..., -1]
    return a, _keyed_alpha(a, im.info.get("transparency"))


def _decode_png16(path: Path) -> np.ndarray:
    import tensorflow as tf

    try:
        return tf.io.decode_png(path.read_bytes(), channels=0, dtype=tf.uint16).numpy()
    except tf.errors.OpError as e:  # truncated or corrupt data
        raise ImageError(f"{path}: cannot decode ({(e.message.strip().splitlines() or ['?'])[0]})") from None


def _tuple(x) -> tuple:
    return tuple(x) if isinstance(x, tuple | list) else (x,)


def _keyed_alpha(pixels: np.ndarray, key) -> np.ndarray | None:
    """The alpha of a colour-keyed image (PNG tRNS for gray or RGB): 0 where the pixel equals `key`."""
    if not isinstance(key, int | tuple) or len(_tuple(key)) != pixels.shape[2]:
        return None
    hit = np.all(pixels == np.asarray(_tuple(key), pixels.dtype), axis=-1)
    return np.where(hit, 0, np.iinfo(pixels.dtype).max).astype(pixels.dtype)


def _png_bit_depth(path: Path) -> int | None:
    with open(path, "rb") as f:
        head = f.read(26)
    if len(head) < 26 or not head.startswith(_PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return None
    return head[24]


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Applies an EXIF orientation (1-8) to [H, W, ...] as PIL.ImageOps.exif_transpose does."""
    turns = {
        2: lambda x: x[:, ::-1],
        3: lambda x: x[::-1, ::-1],
        4: lambda x: x[::-1],
        5: lambda x: x.swapaxes(0, 1),
        6: lambda x: np.rot90(x, -1),
        7: lambda x: x[::-1, ::-1].swapaxes(0, 1),
        8: lambda x: np.rot90(x, 1),
    }
    return turns[orientation](a) if orientation in turns else a


# ---------------------------------------------------------------- ImageFile: writing


def output_format(path: str | os.PathLike) -> str:
    """The Pillow format name WRITE_FORMATS gives `path`'s extension; ImageError for any other."""
    fmt = WRITE_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ImageError(f"{path}: unknown image extension (use .png, .jpg, .webp or .tif)")
    return fmt


def check_writable(path: str | os.PathLike, image: ImageFile) -> None:
    """Raises ImageError unless `image` (or an upscaled copy, which has the same kind of pixels) can be
    written at `path`: a known extension, and no transparency for JPEG."""
    if output_format(path) == "JPEG" and image.has_transparency:
        raise ImageError(f"{path}: JPEG cannot hold transparency, and the input has some; "
                         "write .png, .webp or .tif instead")


def write_image_file(path: str | os.PathLike, image: ImageFile, quality: int = 95) -> None:
    """Writes `image` in the format its extension names (see the module docstring), atomically.

    `quality` (1-100) applies to JPEG and WebP. Raises ImageError as check_writable does; warns
    (ImageWarning) when a 16-bit colour or gray+alpha image is written as 8-bit TIFF.
    """
    check_writable(path, image)
    fmt = output_format(path)
    pixels, alpha = image.pixels, image.alpha
    if fmt == "JPEG":
        alpha = None  # fully opaque, as check_writable ensured
    if fmt == "PNG" and image.bits == 16 and (not image.gray or alpha is not None):
        data = _encode_png16(pixels if alpha is None else np.concatenate([pixels, alpha[..., None]], -1), image.icc)
        atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
        return
    if image.bits == 16 and (fmt in ("JPEG", "WEBP") or not image.gray or alpha is not None):
        if fmt == "TIFF":
            warnings.warn(f"{path}: Pillow writes 16-bit TIFF only for grayscale without alpha; "
                          "this image is written with 8 bits", ImageWarning, stacklevel=2)
        pixels, alpha = _to_8_bits(pixels), None if alpha is None else _to_8_bits(alpha)
    planes = pixels if alpha is None else np.concatenate([pixels, alpha[..., None]], -1)
    im = Image.fromarray(planes[..., 0] if planes.shape[2] == 1 else planes)
    if fmt == "WEBP" and image.gray:
        im = im.convert("RGBA" if alpha is not None else "RGB")
    options = {"quality": int(quality)} if fmt in ("JPEG", "WEBP") else {}
    icc = _matching_icc(image.icc, gray=im.mode in ("L", "LA", "I;16"))
    if icc is not None:
        options["icc_profile"] = icc
    atomic_write(path, lambda tmp: im.save(tmp, format=fmt, **options))


def _to_8_bits(a: np.ndarray) -> np.ndarray:
    """uint16 to uint8, nearest level (65535 / 255 = 257 exactly)."""
    return ((a.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _matching_icc(icc: bytes | None, gray: bool) -> bytes | None:
    """`icc` if its header's colour space is that of the pixels (b'GRAY' or b'RGB '), else None."""
    if not icc or len(icc) < 20:
        return None
    return icc if icc[16:20] == (b"GRAY" if gray else b"RGB ") else None


def _encode_png16(planes: np.ndarray, icc: bytes | None) -> bytes:
    """A 16-bit PNG of uint16 [H, W, C] (C = 2, 3 or 4) with `icc` as its iCCP chunk when it fits."""
    import tensorflow as tf

    data = tf.io.encode_png(tf.constant(planes, tf.uint16)).numpy()
    icc = _matching_icc(icc, gray=planes.shape[2] == 2)
    if icc is None:
        return data
    body = b"ICC Profile\x00\x00" + zlib.compress(icc)  # name, NUL, compression method 0 (zlib)
    chunk = struct.pack(">I", len(body)) + b"iCCP" + body + struct.pack(">I", zlib.crc32(b"iCCP" + body))
    ihdr_end = len(_PNG_SIGNATURE) + 8 + 13 + 4  # the IHDR chunk always comes first and holds 13 bytes
    return data[:ihdr_end] + chunk + data[ihdr_end:]


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


def crop_to_scale(image: np.ndarray, scale: int) -> np.ndarray:
    """`image` [H, W, ...] less its last H % scale rows and W % scale columns, so that both sides are multiples
    of `scale` (a view, not a copy)."""
    return image[: image.shape[0] - image.shape[0] % scale, : image.shape[1] - image.shape[1] % scale]


def nearest_upscale(image: np.ndarray, scale: int) -> np.ndarray:
    """`image` [H, W, ...] upscaled by the integer `scale` with nearest neighbours: each pixel becomes a
    scale x scale block of the [H * scale, W * scale, ...] result."""
    return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)


def save_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Writes a uint8 [H, W, 3] (or [H, W]) array; the format follows the extension. Atomic."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f"save_image wants uint8, got {image.dtype}")
    fmt = Image.registered_extensions().get(Path(path).suffix.lower())
    if fmt is None:
        raise ImageError(f"{path}: unknown image extension")
    atomic_write(path, lambda tmp: Image.fromarray(image).save(tmp, format=fmt))
