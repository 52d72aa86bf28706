"""Upscaling large images tile by tile, with results equal to the whole-image result.

A fully convolutional generator's output pixel depends only on the low-resolution (LR) pixels within its
receptive radius. Each tile is therefore run with a margin of that radius on every side (clipped at the
image border, where the generator's own zero padding applies just as for the whole image), and only the
tile's core is kept. BatchNormalization in inference mode is a per-pixel affine map, so the tiled result
equals the whole-image result up to float round-off, while peak memory depends on the tile size only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# LR pixels. With the default generator's 40-pixel margins a tile is run on 208x208 pixels: about 1.5 GB
# peak in graph mode (SavedModel, tf.function) and 3.1 GB through eager Keras on this CPU.
DEFAULT_TILE = 128
# Where `python -m srgan_tf.export` records scale and receptive radius: a JSON file in a SavedModel's
# assets.extra/ folder, and a metadata entry of that name in a TFLite flatbuffer.
SAVEDMODEL_METADATA_FILE = "srgan_tf.json"
TFLITE_METADATA_NAME = "srgan_tf"
ONNX_METADATA_KEY = "srgan_tf"  # an ONNX model's metadata_props key

# Layers that act on each pixel independently (no spatial extent).
_POINTWISE = {
    "InputLayer", "BatchNormalization", "PReLU", "LeakyReLU", "ReLU", "Activation", "Add", "Multiply",
    "Subtract", "Rescaling", "Identity", "Dropout",
}


class TilingError(ValueError):
    """The model's receptive field cannot be derived from its layers."""


def receptive_radius(model, input_index: int | None = None) -> tuple[int, int]:
    """(radius, scale) of a Keras functional super-resolution model.

    `radius` is the smallest r such that every output pixel depends only on LR pixels within r rows and
    r columns of the LR pixel it lies over (floor(output_index / scale)); `scale` is the output/input size
    ratio. Supports stride-1 "same" Conv2D layers, PixelShuffle (depth-to-space) and pointwise layers;
    anything else raises TilingError. The default 16-block SRResNet has radius 40 and scale 4. A model with
    several inputs of the same size (the generator's tail: features and LR) needs `input_index`, or None
    for the largest radius over all of them.
    """
    from srgan_tf.models import PixelShuffle

    if len(model.outputs) != 1:
        raise TilingError("tiling needs a model with one output")
    if input_index is None and len(model.inputs) > 1:
        return max(receptive_radius(model, i)[0] for i in range(len(model.inputs))), \
            receptive_radius(model, 0)[1]
    scale = 1
    for layer in model.layers:
        if isinstance(layer, PixelShuffle):
            scale *= layer.factor
    # Walk the graph from the output back to the input, carrying for each tensor the interval of its
    # indices (along one spatial axis) that one output index depends on; the exact floor arithmetic of
    # depth-to-space makes the answer depend on the output index modulo the scale, so try every phase.
    centre = 1000 * scale
    radius = 0
    for phase in range(scale):
        for axis in (0, 1):
            lo, hi = _input_interval(model, centre + phase, axis, input_index or 0)
            radius = max(radius, centre // scale - lo, hi - centre // scale)
    return radius, scale


def _scale_of(model) -> int:
    from srgan_tf.models import PixelShuffle

    scale = 1
    for layer in model.layers:
        if isinstance(layer, PixelShuffle):
            scale *= layer.factor
    return scale


def _input_interval(model, out_index: int, axis: int, input_index: int = 0) -> tuple[int, int]:
    from keras import layers

    from srgan_tf.models import BicubicUpsample, PixelShuffle

    intervals = {id(model.outputs[0]): (out_index, out_index)}
    nodes_by_depth = model._nodes_by_depth  # Keras 3 functional graph: depth 0 holds the output nodes
    for depth in sorted(nodes_by_depth):
        for node in nodes_by_depth[depth]:
            outs = [intervals.get(id(t)) for t in node.outputs]
            outs = [iv for iv in outs if iv is not None]
            if not outs:
                continue
            lo, hi = min(iv[0] for iv in outs), max(iv[1] for iv in outs)
            op = node.operation
            if isinstance(op, layers.Conv2D):
                if op.strides != (1, 1) or op.padding != "same":
                    raise TilingError(f"layer {op.name}: only stride-1 'same' convolutions can be tiled")
                span = op.dilation_rate[axis] * (op.kernel_size[axis] - 1)
                lo, hi = lo - span // 2, hi + span - span // 2
            elif isinstance(op, PixelShuffle):
                lo, hi = lo // op.factor, hi // op.factor
            elif isinstance(op, BicubicUpsample):  # output pixel i reads LR pixels i // factor -2 .. +2
                lo, hi = lo // op.factor - 2, hi // op.factor + 2
            elif type(op).__name__ not in _POINTWISE:
                raise TilingError(f"layer {op.name} ({type(op).__name__}) has an unknown spatial extent")
            for t in node.arguments.keras_tensors:
                old = intervals.get(id(t))
                intervals[id(t)] = (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))
    # An input that no output pixel reads (the generator tail's LR input without the bicubic skip) has none.
    return intervals.get(id(model.inputs[input_index]), (out_index // _scale_of(model), out_index // _scale_of(model)))


@dataclass(frozen=True)
class Tile:
    """One tile: `core` is the LR region it contributes, `window` the larger LR region it is run on.

    Both are (top, bottom, left, right), half-open, in LR pixels of the whole image.
    """

    core: tuple[int, int, int, int]
    window: tuple[int, int, int, int]


def plan_tiles(height: int, width: int, tile: int, margin: int) -> list[Tile]:
    """Cores of at most tile x tile LR pixels covering the image exactly once, each with its window
    grown by `margin` on every side and clipped to the image."""
    if tile < 1 or margin < 0:
        raise ValueError(f"tile must be >= 1 and margin >= 0, got {tile} and {margin}")
    tiles = []
    for i in range(tile_count(height, tile)):
        top, bottom, wtop, wbottom = tile_span(i, height, tile, margin)
        for j in range(tile_count(width, tile)):
            left, right, wleft, wright = tile_span(j, width, tile, margin)
            tiles.append(Tile((top, bottom, left, right), (wtop, wbottom, wleft, wright)))
    return tiles


def tile_count(size, tile):
    """Tiles of `tile` pixels along an axis of `size` pixels (the last one may be shorter). Plain arithmetic, so
    `size` and `tile` may be Python ints or integer TF tensors (the SavedModel's in-graph tiling)."""
    return (size + tile - 1) // tile


def tile_span(index, size, tile, margin, minimum=min, maximum=max):
    """(core start, core stop, window start, window stop) of tile `index` along an axis of `size` pixels: the core
    is [index*tile, index*tile + tile) cut at `size`, the window the core grown by `margin` on both sides and
    clipped to [0, size). With minimum=tf.minimum, maximum=tf.maximum it works on TF tensors, so that plan_tiles
    and the exported graphs (srgan_tf.export.tiled) cut images the same way."""
    start = index * tile
    stop = minimum(start + tile, size)
    return start, stop, maximum(start - margin, 0), minimum(stop + margin, size)


def upscale_tiled(
    upscale: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    scale: int,
    margin: int,
    tile: int = DEFAULT_TILE,
    on_tile: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """`upscale` applied to [H, W, C] tile by tile: [scale*H, scale*W, C'].

    `upscale` maps one [h, w, C] array to [scale*h, scale*w, C'] of one dtype (any: uint8, uint16, float);
    `margin` must be at least its receptive radius (see receptive_radius) for the result to equal
    upscale(image). Only the output array and one tile's activations are held at once. `on_tile(done,
    total)` is called after each tile.
    """
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"expected an image [H, W, C], got shape {image.shape}")
    height, width = image.shape[:2]
    tiles = plan_tiles(height, width, tile, margin)
    out = None
    for done, piece in enumerate(tiles, start=1):
        top, bottom, left, right = piece.window
        result = np.asarray(upscale(image[top:bottom, left:right]))
        if result.ndim != 3 or result.shape[:2] != (scale * (bottom - top), scale * (right - left)):
            raise ValueError(f"upscale returned shape {result.shape} for a {bottom - top}x{right - left} tile "
                             f"at {scale}x")
        if out is None:
            out = np.empty((scale * height, scale * width, result.shape[2]), result.dtype)
        ct, cb, cl, cr = piece.core
        out[scale * ct:scale * cb, scale * cl:scale * cr] = result[
            scale * (ct - top):scale * (cb - top), scale * (cl - left):scale * (cr - left)
        ]
        if on_tile is not None:
            on_tile(done, len(tiles))
    return out


def tflite_metadata(model_bytes: bytes) -> dict | None:
    """The JSON metadata `python -m srgan_tf.export` stores in a TFLite flatbuffer, or None if there is none."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAs(model_bytes, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() and entry.Name().decode() == TFLITE_METADATA_NAME:
            return json.loads(model.Buffers(entry.Buffer()).DataAsNumpy().tobytes())
    return None


def artifact_metadata(spec: str | os.PathLike) -> dict | None:
    """Export metadata of a SavedModel folder, .tflite or .onnx file (scale, receptive_radius, ...), or None
    (also for an .onnx file where the onnx package is not installed)."""
    path = Path(spec)
    if path.is_dir():
        file = path / "assets.extra" / SAVEDMODEL_METADATA_FILE
        return json.loads(file.read_text()) if file.is_file() else None
    if path.suffix.lower() == ".tflite" and path.is_file():
        return tflite_metadata(path.read_bytes())
    if path.suffix.lower() == ".onnx" and path.is_file():
        try:
            import onnx
        except ImportError:
            return None
        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        return json.loads(props[ONNX_METADATA_KEY]) if ONNX_METADATA_KEY in props else None
    return None


def margin_for(spec: str | os.PathLike) -> int:
    """The receptive radius (LR pixels) of a .keras generator, or of an exported SavedModel, TFLite or ONNX
    model as recorded in its metadata. Raises TilingError when it cannot be known."""
    path = Path(spec)
    if path.suffix.lower() == ".keras":
        import keras

        import srgan_tf.models  # noqa: F401 - registers PixelShuffle

        return receptive_radius(keras.models.load_model(path, compile=False))[0]
    radius = (artifact_metadata(path) or {}).get("receptive_radius")
    if not isinstance(radius, int):
        raise TilingError(f"{spec}: no receptive radius recorded (not written by `python -m srgan_tf.export`); "
                          "pass --margin")
    return radius


# --- Two-level tiling of a generator split into its LR trunk and its upsampling tail -----------------------
# The trunk (16 residual blocks) holds a few F-channel tensors per LR pixel; the tail holds scale^2 times as
# many values per LR pixel (256-channel maps at 2x, 64-channel maps at 4x) but reads only a few LR pixels
# around each output pixel. So the trunk runs on large windows (little recomputed margin) and the tail on
# small tiles inside each window (a margin of a few pixels). Estimates of live float32 values per LR pixel
# of graph-mode inference (TF frees each activation after its last use), conservative against RSS measured
# here (bench/tiling.py):
_TRUNK_TENSORS = 6  # x, y, the long skip, conv scratch (im2col), BN/PReLU outputs
_TAIL_TENSORS = 5  # conv output, shuffled copy, PReLU output, next conv's scratch, at the tail's resolution


@dataclass(frozen=True)
class SplitGenerator:
    """A generator as trunk and tail (see srgan_tf.inference_graph.split_generator), in numpy terms.

    trunk: float32 [1, h, w, 3] in [0, 1] -> float32 [1, h, w, features]; tail: (features [1, h, w, F],
    lr [1, h, w, 3]) -> float32 [1, scale*h, scale*w, 3] in [0, 1]. The radii are in LR pixels: the trunk's
    receptive radius, and the tail's over both of its inputs."""

    trunk: Callable[[np.ndarray], np.ndarray]
    tail: Callable[[np.ndarray, np.ndarray], np.ndarray]
    trunk_radius: int
    tail_radius: int
    features: int
    scale: int


def plan_two_level(height: int, width: int, g: SplitGenerator, budget_bytes: int) -> tuple[int, int]:
    """(trunk tile, tail tile) in LR pixels for an image of height x width within `budget_bytes` of
    activations: the largest square trunk window (with its margin) whose tensors fit half the budget, the
    largest tail tile fitting a quarter. A window covering the whole image needs no margin."""
    whole_pixels, trunk_tile, tail_tile = two_level_sizes(g.features, g.scale, g.trunk_radius, g.tail_radius,
                                                          budget_bytes)
    return (max(height, width) if height * width <= whole_pixels else trunk_tile), tail_tile


def two_level_sizes(features: int, scale: int, trunk_radius: int, tail_radius: int,
                    budget_bytes: float) -> tuple[float, int, int]:
    """The image-independent part of plan_two_level: (whole_pixels, trunk tile, tail tile). An image of at most
    `whole_pixels` LR pixels runs the trunk in one window (no margin); a larger one in windows of trunk tile
    (core, LR pixels) plus the margin trunk_radius + tail_radius; the tail runs on cores of tail tile plus
    tail_radius. Shared by the CLI (plan_two_level) and the SavedModel's in-graph tiling."""
    whole_pixels = budget_bytes / 2 / (4 * features * _TRUNK_TENSORS)
    margin = trunk_radius + tail_radius
    trunk_tile = max(16, int(whole_pixels ** 0.5) - 2 * margin)
    # The widest maps: 4F channels at (scale / 2)^2 pixels per LR pixel, before the last pixel shuffle.
    tail_px = budget_bytes / 4 / (4 * features * scale ** 2 * _TAIL_TENSORS)
    tail_tile = max(16, int(tail_px ** 0.5) - 2 * tail_radius)
    return whole_pixels, trunk_tile, tail_tile


def upscale_two_level(g: SplitGenerator, image: np.ndarray, budget_bytes: int,
                      finish: Callable[[np.ndarray], np.ndarray],
                      on_tile: Callable[[int, int], None] | None = None) -> np.ndarray:
    """The generator on float32 [H, W, 3] in [0, 1], tiled at two levels within `budget_bytes`: equal to the
    whole-image result up to float round-off. `finish` maps each float32 [h, w, 3] output tile in [0, 1] to
    the output's dtype (e.g. rounding to uint8), so the whole image is never held as float. Returns
    [scale*H, scale*W, C] of `finish`'s dtype. `on_tile(done, total)` counts trunk windows."""
    height, width = image.shape[:2]
    trunk_tile, tail_tile = plan_two_level(height, width, g, budget_bytes)
    s = g.scale
    windows = plan_tiles(height, width, trunk_tile, g.trunk_radius + g.tail_radius)
    out = None
    for done, window in enumerate(windows, start=1):
        wt, wb, wl, wr = window.window
        features = g.trunk(image[None, wt:wb, wl:wr])
        ct, cb, cl, cr = window.core
        for sub in plan_tiles(cb - ct, cr - cl, tail_tile, 0):
            # The sub-tile's core in image coordinates, and the tail's window around it: grown by the tail's
            # radius beyond the trunk window's core (the window holds that much valid context by
            # construction), clipped to the image only.
            kt, kb, kl, kr = (sub.core[0] + ct, sub.core[1] + ct, sub.core[2] + cl, sub.core[3] + cl)
            r = g.tail_radius
            st, sb, sl, sr = max(kt - r, 0), min(kb + r, height), max(kl - r, 0), min(kr + r, width)
            y = g.tail(features[:, st - wt:sb - wt, sl - wl:sr - wl], image[None, st:sb, sl:sr])[0]
            piece = finish(y[s * (kt - st):s * (kb - st), s * (kl - sl):s * (kr - sl)])
            if out is None:
                out = np.empty((s * height, s * width, piece.shape[2]), piece.dtype)
            out[s * kt:s * kb, s * kl:s * kr] = piece
        if on_tile is not None:
            on_tile(done, len(windows))
    return out
