"""python -m srgan_tf.upscale IMAGE [--model=srgan] [--output=OUT] [--outscale=F] [--quality=95]

Upscales one image file, or every image below a folder, and writes each result as its input came in: the
same bit depth (8 or 16), grayscale kept grayscale, alpha kept, the ICC profile carried over, the EXIF
orientation applied (see srgan_tf.images for the details and for what each output format can hold).

- Output: without --output, IMAGE.png becomes IMAGE_x4.png beside it (x<outscale or scale>) and a folder
  DIR becomes DIR_x4/. An --output file's extension picks the format (.png, .jpg, .webp, .tif); an --output
  that ends in '/' or is an existing folder gets NAME.png (created if missing); a folder input gets one PNG
  per image at the same relative path. --quality applies to JPEG and WebP.
- MODEL is a shipped model's name, 'bicubic', a .keras generator, a SavedModel folder or a .tflite file
  (see srgan_tf.loader). Images are processed in tiles with a margin of the model's receptive radius, so
  the result equals the whole-image result while memory stays bounded.
- 16 bits: the model runs on the image as float32 in [0, 1] (value / 65535), and its float output is
  rounded to 16 bits, with no 8-bit step. 8-bit images go through the model's uint8 path, as before.
- Grayscale: the model runs on the gray replicated to RGB; the result's three channels are averaged back
  to one gray (the model is trained on colour, and a gray input gives nearly equal channels; averaging is
  the choice that keeps every channel's information and needs no colour-space assumption).
- Alpha: upscaled on its own with MATLAB's bicubic (srgan_tf.imresize, as for the bicubic baseline), in
  tiles, rounded and clipped to the alpha's bit depth after each pass as MATLAB does. A fully opaque
  alpha is not resized at all: it comes back fully opaque (every value 255 or 65535), exactly.
- --outscale F (any float > 0): the model's scale runs first, then MATLAB's bicubic resizes the result
  (and its alpha) to round(F * input height) x round(F * input width); F equal to the model's scale means
  no extra resize.
- Quiet: TensorFlow's log lines reach the terminal only with --verbose. The user sees the progress bar,
  one line per written file, `warning: ...` lines where a file loses precision, and `error: ...` lines.

Exit status: 0 all done, 1 bad input or some images failed (each is reported, the others are still
written), 2 bad flags. Errors are one `error: ...` line each.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from absl import flags

from srgan_tf import cli
from srgan_tf.images import (
    READ_EXTENSIONS,
    ImageError,
    ImageFile,
    ImageWarning,
    check_writable,
    find_images,
    output_format,
    read_image_file,
    write_image_file,
)
from srgan_tf.tiling import DEFAULT_TILE, TilingError, artifact_metadata, margin_for, upscale_tiled

USAGE = "python -m srgan_tf.upscale IMAGE_OR_FOLDER [--model=srgan] [--output=OUT] [--outscale=F]"
DEFAULT_MODEL = "srgan"
DEFAULT_QUALITY = 95
_MIN_TILE = 16
_BICUBIC_MARGIN = 4  # MATLAB bicubic reads 2 LR pixels either side when upscaling


class UpscaleError(ValueError):
    """A user mistake that stops the whole run; the message is one line."""


def choose_tile(tile: int, margin: int, max_pixels: int | None) -> int:
    """`tile`, shrunk if needed so that a tile with its margins fits a model's pixel limit."""
    if max_pixels is None or (tile + 2 * margin) ** 2 <= max_pixels:
        return tile
    fitted = math.isqrt(max_pixels) - 2 * margin
    if fitted < _MIN_TILE:
        raise UpscaleError(f"the model's {max_pixels}-pixel limit leaves no room for tiles with a "
                           f"{margin}-pixel margin; re-export it with a larger --max_pixels")
    return fitted


# ---------------------------------------------------------------- pixels


def _finish(bits: int, gray: bool) -> Callable[[np.ndarray], np.ndarray]:
    """float [h, w, 3] in [0, 1] -> the output's dtype and channels: 16 bits rounded from the float (gray:
    the channels' mean), 8 bits rounded per channel (gray: the rounded channels' mean)."""

    def finish(y: np.ndarray) -> np.ndarray:
        if bits == 16:
            y = y.astype(np.float64).mean(-1, keepdims=True) if gray else y.astype(np.float64)
            return np.floor(np.clip(y, 0.0, 1.0) * 65535 + 0.5).astype(np.uint16)
        return _gray8(np.floor(np.clip(y.astype(np.float64), 0.0, 1.0) * 255 + 0.5).astype(np.uint8), gray)

    return finish


def _gray8(u8: np.ndarray, gray: bool) -> np.ndarray:
    return ((u8.astype(np.uint16).sum(-1, keepdims=True) + 1) // 3).astype(np.uint8) if gray else u8


def _colour_fn(upscaler, bits: int, gray: bool) -> Callable[[np.ndarray], np.ndarray]:
    """The model on one tile of [h, w, C] (C = 1 or 3, uint8 or uint16), returning the same C and dtype.
    8 bits go through the upscaler's own uint8 path (bicubic rounds as MATLAB does), 16 through its floats."""
    if bits == 16:
        finish = _finish(16, gray)
        return lambda x: finish(upscaler.predict_float(
            (np.repeat(x, 3, axis=-1) if gray else x)[None].astype(np.float32) / np.float32(65535))[0])
    return lambda x: _gray8(upscaler(np.repeat(x, 3, axis=-1) if gray else x), gray)


def default_max_memory() -> int:
    """Bytes for activations and the output: 1.5 GiB, or half the memory available now if that is less."""
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        available = 1 << 40
    return int(min(1.5 * 2**30, available / 2))


def _model_pixels(upscaler, image: ImageFile, margin: int, tile: int | None, max_memory: int,
                  on_tile: Callable[[int, int], None] | None) -> np.ndarray:
    """The model's output for `image`'s colour pixels: two-level tiling within `max_memory` for a generator
    of srgan_tf.models with no --tile given, else tiles of `tile` (default DEFAULT_TILE) with `margin`."""
    scale = upscaler.scale
    height, width, channels = image.pixels.shape
    out_bytes = scale * scale * height * width * channels * image.pixels.itemsize
    if out_bytes > max_memory / 2:
        raise ImageError(f"a {width}x{height} input makes a {scale * width}x{scale * height} output of "
                         f"{out_bytes / 2**20:.0f} MB, more than half of --max_memory "
                         f"({max_memory / 2**20:.0f} MB); raise --max_memory or downscale the input")
    split = getattr(upscaler, "split", None)
    if tile is None and split is not None:
        from srgan_tf.tiling import upscale_two_level

        x = image.pixels.astype(np.float32) / np.float32(np.iinfo(image.pixels.dtype).max)
        x = np.repeat(x, 3, axis=-1) if image.gray else x
        return upscale_two_level(split, x, max_memory - out_bytes, _finish(image.bits, image.gray), on_tile)
    return upscale_tiled(_colour_fn(upscaler, image.bits, image.gray), image.pixels, scale, margin,
                         tile or DEFAULT_TILE, on_tile)


def upscale_image(upscaler, image: ImageFile, margin: int, tile: int | None = None,
                  outscale: float | None = None, on_tile: Callable[[int, int], None] | None = None,
                  max_memory: int | None = None) -> ImageFile:
    """`image` upscaled by `upscaler.scale`, then resized to round(outscale * size) when that differs.

    The result has `image`'s bit depth, channels, alpha (see the module docstring) and ICC profile.
    Raises ImageError, before any work, for an input whose output alone would take over half of
    `max_memory` bytes (default: default_max_memory()).
    """
    from srgan_tf.imresize import resize_to  # imports TensorFlow: not before the command line quietened it

    scale = upscaler.scale
    height, width = image.pixels.shape[:2]
    pixels = _model_pixels(upscaler, image, margin, tile, max_memory or default_max_memory(), on_tile)
    size = (scale * height, scale * width)
    if outscale is not None:
        size = (max(1, math.floor(outscale * height + 0.5)), max(1, math.floor(outscale * width + 0.5)))
        pixels = resize_to(pixels, *size)
    alpha = image.alpha
    if alpha is not None and not image.has_transparency:
        alpha = np.full(size, np.iinfo(alpha.dtype).max, alpha.dtype)
    elif alpha is not None:
        alpha = upscale_tiled(lambda a: resize_to(a, scale * a.shape[0], scale * a.shape[1]), alpha[..., None],
                              scale, _BICUBIC_MARGIN, tile or DEFAULT_TILE)
        alpha = resize_to(alpha, *size)[..., 0]
    return ImageFile(pixels, alpha, image.icc)


def upscale_file(upscaler, src: Path, dst: Path, tile: int | None, margin: int, outscale: float | None = None,
                 quality: int = DEFAULT_QUALITY, on_tile: Callable[[int, int], None] | None = None,
                 max_memory: int | None = None) -> None:
    """Reads `src`, upscales it and writes `dst` atomically. Raises ImageError or OSError."""
    image = read_image_file(src)
    check_writable(dst, image)  # before the model runs: e.g. transparency cannot go to JPEG
    write_image_file(dst, upscale_image(upscaler, image, margin, tile, outscale, on_tile, max_memory), quality)


# ---------------------------------------------------------------- files and folders


def check_output_file(path: Path) -> None:
    """Raises UpscaleError unless an image can be written at `path` (known extension, writable folder)."""
    try:
        output_format(path)
    except ImageError as e:
        raise UpscaleError(str(e)) from None
    _check_writable_folder(path.parent)


def _check_writable_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UpscaleError(f"{folder}: cannot create the output folder ({e.strerror or e})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UpscaleError(f"{folder}: the output folder is not writable")


def factor_label(scale: int, outscale: float | None) -> str:
    """'x4', 'x2.5': the factor that names default outputs."""
    return f"x{scale if outscale is None else outscale:g}"


def default_output(src: Path, label: str) -> Path:
    """photo.jpg -> photo_x4.png beside it; a folder DIR -> DIR_x4 beside it."""
    return src.parent / (f"{src.name}_{label}" if src.is_dir() else f"{src.stem}_{label}.png")


def _is_folder_spec(dst: str | os.PathLike) -> bool:
    text = os.fspath(dst)
    return text.endswith(("/", os.sep)) or Path(text).is_dir()


def _load(model: str, scale: int, margin: int | None, tile: int | None, quiet: bool, precision: str = "float32"):
    """(upscaler, margin, tile) for `model`, with TensorFlow's import-time log lines muted if `quiet`. `tile`
    stays None (two-level tiling within the memory budget) for a generator that can be split."""
    with cli.muted_stderr(quiet):
        from srgan_tf.loader import load_upscaler

        upscaler = load_upscaler(model, scale, precision)
        # A shipped model's name resolves to a file; the loader may say which (`source`), else the spec is one.
        spec = str(getattr(upscaler, "source", None) or model)
        split = getattr(upscaler, "split", None)
        if tile is None and split is not None:
            return upscaler, split.trunk_radius + split.tail_radius, None
        if margin is None:
            margin = _BICUBIC_MARGIN if model == "bicubic" else margin_for(spec)
        limit = None if model == "bicubic" else (artifact_metadata(spec) or {}).get("max_pixels")
    return upscaler, margin, choose_tile(tile or DEFAULT_TILE, margin, limit)


def run(model: str, src: Path, dst: str | os.PathLike | None = None, tile: int | None = None,
        margin: int | None = None, scale: int = 4, log: Callable[[str], None] = print,
        outscale: float | None = None, quality: int = DEFAULT_QUALITY, quiet: bool = False,
        warn: Callable[[str], None] | None = None, max_memory: int | None = None,
        precision: str = "float32") -> list[tuple[Path, str]]:
    """Upscales `src` (file or folder) into `dst`; returns (input path, reason) for each image that failed.

    `dst` None means the default name (default_output); a `dst` ending in '/' is a folder. Raises
    UpscaleError, ModelLoadError or TilingError for mistakes that stop everything: a missing input, an
    empty folder, an unwritable output, an unusable model. `warn` gets one line per precision loss.
    `tile` None: two-level tiling within `max_memory` bytes (default_max_memory()) where the model allows.
    `precision` "bfloat16" runs a Keras generator's feature maps in bfloat16 (srgan_tf.loader.load_upscaler).
    """
    src = Path(src)
    warn = warn or (lambda line: print(f"warning: {line}", file=sys.stderr))
    if tile is not None and tile < 1:
        raise UpscaleError(f"--tile must be positive, got {tile}")
    if outscale is not None and not (math.isfinite(outscale) and outscale > 0):
        raise UpscaleError(f"--outscale must be a number > 0, got {outscale}")
    if not src.exists():
        raise UpscaleError(f"{src}: no such file or folder")
    out = default_output(src, factor_label(scale, outscale)) if dst is None else Path(dst)
    if src.is_dir():
        sources = find_images(src, READ_EXTENSIONS)
        if not sources:
            raise UpscaleError(f"{src}: no image files in this folder")
        if out.exists() and not out.is_dir():
            raise UpscaleError(f"{out}: is a file; the input is a folder, so the output must be a folder")
        _check_writable_folder(out)
    else:
        if dst is not None and _is_folder_spec(dst):
            out = out / f"{src.stem}.png"
        check_output_file(out)
    upscaler, margin, tile = _load(model, scale, margin, tile, quiet, precision)

    def attempt(path: Path, target: Path, on_tile=None) -> str | None:
        return _try_upscale(upscaler, path, target, tile, margin, outscale, quality, warn, on_tile, max_memory)

    from keras.utils import Progbar

    if src.is_file():
        bar = None

        def on_tile(done: int, total: int) -> None:
            nonlocal bar
            if total > 1:
                bar = bar or Progbar(total, unit_name="tile")
                bar.update(done)

        failure = attempt(src, out, on_tile)
        if failure is None:
            log(f"wrote {out}")
        return [] if failure is None else [(src, failure)]

    failures = []
    bar = Progbar(len(sources), unit_name="image")
    for i, path in enumerate(sources, start=1):
        failure = attempt(path, (out / path.relative_to(src)).with_suffix(".png"))
        if failure is not None:
            failures.append((path, failure))
        bar.update(i)
    log(f"wrote {len(sources) - len(failures)} of {len(sources)} images to {out}")
    return failures


def _try_upscale(upscaler, src: Path, dst: Path, tile: int | None, margin: int, outscale: float | None,
                 quality: int, warn: Callable[[str], None], on_tile=None, max_memory: int | None = None) -> str | None:
    """upscale_file, returning None on success or a one-line reason on failure; ImageWarnings go to `warn`."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ImageWarning)
        try:
            upscale_file(upscaler, src, dst, tile, margin, outscale, quality, on_tile, max_memory)
        except (ImageError, OSError) as e:
            return _reason(e)
        except Exception as e:  # a model error on one image (e.g. TF InvalidArgument) must not stop the rest
            return f"{type(e).__name__}: {_reason(e)}"
        finally:
            for w in caught:
                if issubclass(w.category, ImageWarning):
                    warn(str(w.message))
    return None


def _reason(e: BaseException) -> str:
    # TF errors start with a generic header and list graph nodes; the line that says why is in between.
    noise = ("Graph execution error", "Detected at node", "File ", "[[", "<stack traces")
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(noise)]
    return (useful or lines or [type(e).__name__])[0]


# ---------------------------------------------------------------- command line


def _flag_values() -> flags.FlagValues:
    fv = flags.FlagValues()
    flags.DEFINE_string("model", DEFAULT_MODEL, "A shipped model's name (srgan, srresnet), 'bicubic', a .keras "
                        "generator, a SavedModel folder or a .tflite file.", flag_values=fv)
    flags.DEFINE_string("input", None, "An image file or a folder of images (or give it as the argument).",
                        flag_values=fv)
    flags.DEFINE_string("output", None, "Output image file, or folder if it ends in '/' (default: "
                        "NAME_x<factor>.png, or FOLDER_x<factor>/, beside the input).", flag_values=fv)
    flags.DEFINE_float("outscale", None, "Final factor, any number > 0 (default: the model's scale); the "
                       "model's result is resized to it with MATLAB bicubic.", flag_values=fv)
    flags.DEFINE_integer("quality", DEFAULT_QUALITY, "JPEG and WebP quality.", lower_bound=1, upper_bound=100,
                         flag_values=fv)
    flags.DEFINE_integer("max_memory", None, "Megabytes for the model's activations and the output (default: "
                         "1536, or half the available memory if less); an input whose output alone needs more than "
                         "half of it is refused.", lower_bound=64, flag_values=fv)
    flags.DEFINE_integer("tile", None, f"Tile side in input pixels (default: planned from --max_memory for the "
                         f"generators of this package, {DEFAULT_TILE} for other models).", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_integer("margin", None, "Tile overlap in input pixels (default: the model's receptive "
                         "radius).", lower_bound=0, flag_values=fv)
    flags.DEFINE_integer("scale", 4, "Upscaling factor the model must have.", lower_bound=1, flag_values=fv)
    flags.DEFINE_enum("precision", "float32", ["float32", "bfloat16"], "bfloat16 computes a Keras generator's "
                      "feature maps in bfloat16: faster on CPUs with AMX or AVX512-BF16, within a few hundredths "
                      "of a dB (BENCHMARKS.md).", flag_values=fv)
    flags.DEFINE_boolean("verbose", False, "Show TensorFlow's log lines and warnings.", flag_values=fv)
    flags.register_validator("outscale", lambda v: v is None or (math.isfinite(v) and v > 0),
                             message="--outscale must be a number > 0", flag_values=fv)
    return fv


def _parse(fv: flags.FlagValues, argv: list[str]) -> tuple[int | None, str | None]:
    """(exit status or None to go on, the input): cli.parse_flags with one positional argument allowed."""
    positional: list[str] = []
    status = cli.parse_flags(fv, argv, USAGE, positional)
    if status is not None:
        return status, None
    if positional and fv.input is not None:
        print("error: give the input once: as the argument or as --input", file=sys.stderr)
        return cli.EXIT_BAD_FLAGS, None
    if not positional and fv.input is None:
        print(f"error: no input image or folder; usage: {USAGE}", file=sys.stderr)
        return cli.EXIT_BAD_FLAGS, None
    return None, positional[0] if positional else fv.input


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (0 ok, 1 bad input or failed images, 2 bad flags)."""
    fv = _flag_values()
    status, src = _parse(fv, sys.argv if argv is None else argv)
    if status is not None:
        return status
    if not fv.verbose:
        cli.quiet_tensorflow()
    from srgan_tf.loader import ModelLoadError

    try:
        failures = run(fv.model, Path(src), fv.output, fv.tile, fv.margin, fv.scale, outscale=fv.outscale,
                       max_memory=None if fv.max_memory is None else fv.max_memory * 2**20,
                       quality=fv.quality, quiet=not fv.verbose, precision=fv.precision)
    except (UpscaleError, ModelLoadError, TilingError) as e:
        return cli.error(e)
    for path, reason in failures:
        print(f"error: {path}: {reason}" if str(path) not in reason else f"error: {reason}", file=sys.stderr)
    if failures and Path(src).is_dir():
        print(f"error: {len(failures)} image(s) failed; the others were written", file=sys.stderr)
    return cli.EXIT_BAD_INPUT if failures else cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
