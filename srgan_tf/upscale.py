"""python -m srgan_tf.upscale --model=MODEL --input=IN --output=OUT [--tile=192] [--margin=N]

Upscales one image file (OUT is a file, whose extension picks the format, or an existing folder, which
gets NAME.png) or every image below a folder (OUT is a folder; each result is a PNG at the same relative
path). MODEL is a .keras generator, a
SavedModel folder or a .tflite file (see srgan_tf.loader). Images are processed in tiles with a margin of
the model's receptive radius, so the result equals the whole-image result while memory stays bounded.

Exit status: 0 all done, 1 bad input or some images failed (each is reported, the others are still
written), 2 bad flags. Errors are one `error: ...` line each.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402
from PIL import Image  # noqa: E402

from srgan_tf import cli
from srgan_tf.images import ImageError, find_images, load_image, save_image  # noqa: E402
from srgan_tf.tiling import DEFAULT_TILE, TilingError, artifact_metadata, margin_for, upscale_tiled  # noqa: E402

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


def upscale_file(upscaler, src: Path, dst: Path, tile: int, margin: int,
                 on_tile: Callable[[int, int], None] | None = None) -> None:
    """Reads `src`, upscales it tile by tile and writes `dst` atomically. Raises ImageError or OSError."""
    image = load_image(src)
    result = upscale_tiled(upscaler, image, upscaler.scale, margin, tile, on_tile)
    save_image(dst, result)


def check_output_file(path: Path) -> None:
    """Raises UpscaleError unless an image can be written at `path` (known extension, writable folder)."""
    if path.suffix.lower() not in Image.registered_extensions():
        raise UpscaleError(f"{path}: unknown image extension (use .png, .jpg, ...)")
    _check_writable_folder(path.parent)


def _check_writable_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UpscaleError(f"{folder}: cannot create the output folder ({e.strerror or e})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UpscaleError(f"{folder}: the output folder is not writable")


def run(model: str, src: Path, dst: Path, tile: int = DEFAULT_TILE, margin: int | None = None, scale: int = 4,
        log: Callable[[str], None] = print) -> list[tuple[Path, str]]:
    """Upscales `src` (file or folder) into `dst`; returns (input path, reason) for each image that failed.

    Raises UpscaleError, ModelLoadError or TilingError for mistakes that stop everything: a missing
    input, an empty folder, an unwritable output, an unusable model.
    """
    from keras.utils import Progbar

    from srgan_tf.loader import load_upscaler

    if tile < 1:
        raise UpscaleError(f"--tile must be positive, got {tile}")
    if not src.exists():
        raise UpscaleError(f"{src}: no such file or folder")
    if src.is_dir():
        sources = find_images(src)
        if not sources:
            raise UpscaleError(f"{src}: no image files in this folder")
        if dst.exists() and not dst.is_dir():
            raise UpscaleError(f"{dst}: is a file; the input is a folder, so the output must be a folder")
        _check_writable_folder(dst)
    else:
        if dst.is_dir():
            dst = dst / f"{src.stem}.png"
        check_output_file(dst)
    upscaler = load_upscaler(model, scale)
    if margin is None:
        margin = _BICUBIC_MARGIN if model == "bicubic" else margin_for(model)
    limit = None if model == "bicubic" else (artifact_metadata(model) or {}).get("max_pixels")
    tile = choose_tile(tile, margin, limit)

    if src.is_file():
        bar = None

        def on_tile(done: int, total: int) -> None:
            nonlocal bar
            if total > 1:
                bar = bar or Progbar(total, unit_name="tile")
                bar.update(done)

        failure = _try_upscale(upscaler, src, dst, tile, margin, on_tile)
        if failure is None:
            log(f"wrote {dst}")
        return [] if failure is None else [(src, failure)]

    failures = []
    bar = Progbar(len(sources), unit_name="image")
    for i, path in enumerate(sources, start=1):
        failure = _try_upscale(upscaler, path, (dst / path.relative_to(src)).with_suffix(".png"), tile, margin)
        if failure is not None:
            failures.append((path, failure))
        bar.update(i)
    log(f"wrote {len(sources) - len(failures)} of {len(sources)} images to {dst}")
    return failures


def _try_upscale(upscaler, src: Path, dst: Path, tile: int, margin: int, on_tile=None) -> str | None:
    """upscale_file, returning None on success or a one-line reason on failure."""
    try:
        upscale_file(upscaler, src, dst, tile, margin, on_tile)
    except (ImageError, OSError) as e:
        return _reason(e)
    except Exception as e:  # a model error on one image (e.g. TF InvalidArgument) must not stop the rest
        return f"{type(e).__name__}: {_reason(e)}"
    return None


def _reason(e: BaseException) -> str:
    # TF errors start with a generic header and list graph nodes; the line that says why is in between.
    noise = ("Graph execution error", "Detected at node", "File ", "[[", "<stack traces")
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(noise)]
    return (useful or lines or [type(e).__name__])[0]


def _flag_values() -> flags.FlagValues:
    fv = flags.FlagValues()
    flags.DEFINE_string("model", None, "A .keras generator, a SavedModel folder, a .tflite file or "
                        "'bicubic'.", flag_values=fv)
    flags.DEFINE_string("input", None, "An image file or a folder of images.", flag_values=fv)
    flags.DEFINE_string("output", None, "Output image file (for a file input) or folder (for a folder "
                        "input).", flag_values=fv)
    flags.DEFINE_integer("tile", DEFAULT_TILE, "Tile side in input pixels; bounds memory.", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_integer("margin", None, "Tile overlap in input pixels (default: the model's receptive "
                         "radius).", lower_bound=0, flag_values=fv)
    flags.DEFINE_integer("scale", 4, "Upscaling factor the model must have.", lower_bound=1, flag_values=fv)
    for name in ("model", "input", "output"):
        flags.mark_flag_as_required(name, flag_values=fv)
    return fv


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (0 ok, 1 bad input or failed images, 2 bad flags)."""
    from srgan_tf.loader import ModelLoadError

    fv = _flag_values()
    status = cli.parse_flags(fv, sys.argv if argv is None else argv,
                             "python -m srgan_tf.upscale --model=MODEL --input=IN --output=OUT")
    if status is not None:
        return status
    try:
        failures = run(fv.model, Path(fv.input), Path(fv.output), fv.tile, fv.margin, fv.scale)
    except (UpscaleError, ModelLoadError, TilingError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for path, reason in failures:
        print(f"error: {path}: {reason}" if str(path) not in reason else f"error: {reason}", file=sys.stderr)
    if failures and Path(fv.input).is_dir():
        print(f"error: {len(failures)} image(s) failed; the others were written", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
