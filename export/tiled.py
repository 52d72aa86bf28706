"""Tiled upscaling inside a TF graph, for the SavedModel's signatures: memory per request is set by the tile,
not by the image.

The tiles are srgan_tf.tiling's (`tile_count`, `tile_span`, `two_level_sizes`), computed here in TF ops because
the image size is known only per request. A generator of `models.build_generator`'s shape is tiled at two
levels, as the CLI does (`tiling.upscale_two_level`): its trunk (the residual blocks, at LR size) on large
windows with the full receptive margin, its upsampling tail on small tiles inside each window with the tail's
own margin; an image small enough runs the trunk in one window. Another fully convolutional model is tiled at
one level with its receptive radius as margin. Both give the whole-image result up to float round-off, for the
reason in srgan_tf.tiling's docstring. Each output tile is finished (e.g. rounded to uint8) before it is kept,
so the whole image is held only in the output's dtype, and once: tiles are written in place into one
output buffer for the whole batch. The loops run one tile at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
import tensorflow as tf

from srgan_tf.inference_graph import TRUNK_OUTPUT
from srgan_tf.tiling import DEFAULT_TILE, TilingError, receptive_radius, tile_count, tile_span, two_level_sizes

# Activation budgets for two_level_sizes: the trunk's from the first, the tail's from the second. The trunk's
# is the smaller because a large image's output accumulates beside it (a 2048x2048 request's 8192x8192 uint8
# output is 0.2 GB); the tail's tile sets what tiling costs a small image (its margin is recomputed). With the
# default generator: trunk windows of 176-pixel cores (256 pixels with the margin), tail cores of 65 pixels.
# Measured with bench/serving_memory.py, 4 concurrent 2048x2048 requests after one peaked at 1.59 GB with
# budgets of 400 and 600 MB (289- and 81-pixel cores), 1.53 GB with 256 and 400 (215, 65), 1.45 and 1.50 GB
# (two runs) with these: the server holds one response while the next request computes (README, Serving).
# A smaller trunk window recomputes more margin: above 512x512 LR pixels (WHOLE_TRUNK_PIXELS) the trunk
# does (256/176)^2 = 2.1x the work of one window, against 1.9x at 215-pixel cores.
TRUNK_BUDGET_BYTES = 192 << 20
TAIL_BUDGET_BYTES = 400 << 20
# The tail's budget for a request of at most WHOLE_TRUNK_PIXELS LR pixels in all (batch*h*w): its output is small
# (at most 50 MB as float32), so its tail tiles can be larger and fewer pixels are recomputed margin: 137-pixel
# cores with the default generator (3 of 137 and one of 101 across 512) instead of 65. Measured with
# bench/serving_memory.py on an AVX-512 EPYC (jemalloc), a 512x512 request took 1.003 of the whole-image graph's
# time, against 1.135 with 65-pixel cores (1.082 with 117); it peaked at 1.34 GB, and 4 of them at once after one
# at 1.46 GB (1.22 and 1.37 with 117-pixel cores).
SMALL_TAIL_BUDGET_BYTES = 1600 << 20
# An image of up to this many LR pixels runs the trunk in one window even where the budget would tile it: its
# output is small, so one 512x512 window (about 0.36 GB with the default generator) costs no more than a
# max-size request's trunk window plus its 2048x2048 -> 8192x8192 output, and tiling's recomputed margins
# stay off images up to that size.
WHOLE_TRUNK_PIXELS = 512 * 512

Finish = Callable[[tf.Tensor], tf.Tensor]  # [h, w, 3] float32 in [-1, 1] -> [h, w, 3] of the output dtype
Region = tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]  # (top, bottom, left, right), half-open


def _span(index, size, tile, margin):
    return tile_span(index, size, tile, margin, minimum=tf.minimum, maximum=tf.maximum)


def _fresh(shape, dtype: tf.DType) -> tf.Tensor:
    """An uninitialised tensor in a buffer of its own on every run: `Empty` is never constant-folded or shared,
    which `_write_rows` needs (a folded `tf.zeros` would be one buffer for every request). Every element is
    written by the tiles, which cover it; left unwritten, its pages take no memory until the tiles reach them,
    so a request's output grows as it is computed (while the previous request's response is still held)."""
    return tf.raw_ops.Empty(shape=tf.stack(shape), dtype=dtype, init=False)


def _write_rows(buffer: tf.Tensor, start, rows: tf.Tensor) -> tf.Tensor:
    """`buffer` with rows [start, start + len(rows)) set to `rows`, written in place (no copy of `buffer`).

    InplaceUpdate mutates its input; that is safe only on a buffer from `_fresh` threaded through a while_loop
    with no other reader, as in `_tiled`. It is what keeps a request's output held once instead of twice
    (a TensorArray's concat holds the tiles and the joined image at the same time)."""
    return tf.raw_ops.InplaceUpdate(x=buffer, i=tf.range(start, start + tf.shape(rows)[0]), v=rows)


def _tiled(fn: Callable[[list[tf.Tensor], Region], tf.Tensor], inputs: list[tf.Tensor], region: Region,
           tile, margin: int, scale: int, channels: int, dtype: tf.DType, out: tf.Tensor | None = None,
           first_row=0) -> tf.Tensor:
    """The output of `region` of `inputs` (tensors [1, H, W, C] of one H and W): [scale*h, scale*w, channels],
    or, given `out` (a `_fresh` buffer [rows, scale*w, channels]), `out` with it written from `first_row` on.

    The region is cut into cores of `tile` pixels (tiling.tile_span, offset to the region); each core's window
    is the core grown by `margin`, clipped to [0, H) x [0, W); fn(window inputs, core within the window) must
    return the core's output [scale*ch, scale*cw, channels]. Tiles run one after the other, each written into
    its row of tiles (held transposed, so that a tile's columns are rows), each row into the output."""
    top, bottom, left, right = region
    height, width = tf.shape(inputs[0])[1], tf.shape(inputs[0])[2]
    rows, cols = tile_count(bottom - top, tile), tile_count(right - left, tile)
    out_w = scale * (right - left)

    def row(i, out):
        ct, cb, _, _ = _span(i, bottom - top, tile, 0)
        ct, cb = ct + top, cb + top
        wt, wb = tf.maximum(ct - margin, 0), tf.minimum(cb + margin, height)

        def col(j, strip):
            cl, cr, _, _ = _span(j, right - left, tile, 0)
            cl, cr = cl + left, cr + left
            wl, wr = tf.maximum(cl - margin, 0), tf.minimum(cr + margin, width)
            piece = fn([x[:, wt:wb, wl:wr] for x in inputs], (ct - wt, cb - wt, cl - wl, cr - wl))
            return j + 1, _write_rows(strip, scale * (cl - left), tf.transpose(piece, [1, 0, 2]))

        strip = _fresh([out_w, scale * (cb - ct), channels], dtype)
        _, strip = tf.while_loop(lambda j, _: j < cols, col, (0, strip), parallel_iterations=1)
        return i + 1, _write_rows(out, first_row + scale * (ct - top), tf.transpose(strip, [1, 0, 2]))

    if out is None:
        out = _fresh([scale * (bottom - top), out_w, channels], dtype)
    _, out = tf.while_loop(lambda i, _: i < rows, row, (0, out), parallel_iterations=1)
    return out


def _unit(x: tf.Tensor) -> tf.Tensor:
    """The model's input: float32 in [0, 1] as it is, uint8 divided by 255."""
    return x if x.dtype == tf.float32 else tf.cast(x, tf.float32) / 255.0


def _crop(y: tf.Tensor, core: Region, scale: int) -> tf.Tensor:
    """The output [s*h, s*w, C] over the LR `core` of y [1, H, W, C] (a window's output)."""
    top, bottom, left, right = core
    return y[0, scale * top:scale * bottom, scale * left:scale * right]


@dataclass(frozen=True)
class TiledGraph:
    """A generator as graph pieces with its tile plan. `tail` is None for one-level tiling (then `trunk` is the
    whole model); `trunk` None means no tiling (a model whose receptive radius is unknown)."""

    trunk: keras.Model | None
    tail: keras.Model | None
    scale: int
    trunk_margin: int
    tail_margin: int
    whole_pixels: int
    trunk_tile: int
    tail_tile: int
    model: keras.Model
    small_tail_tile: int = 0  # the tail's tile for a request of at most whole_pixels LR pixels in all

    @property
    def form(self) -> str:
        """How requests are tiled, in words (for the export's metadata)."""
        if self.tail is not None:
            return (f"two levels: trunk in one window up to {self.whole_pixels} LR pixels, else {self.trunk_tile}-"
                    f"pixel cores with a {self.trunk_margin}-pixel margin; tail on {self.tail_tile}-pixel cores "
                    f"({self.small_tail_tile} for a request of at most {self.whole_pixels} LR pixels in all) "
                    f"with a {self.tail_margin}-pixel margin")
        if self.trunk is not None:
            return f"one level: {self.trunk_tile}-pixel cores with a {self.trunk_margin}-pixel margin"
        return "none (whole image; receptive radius unknown)"

    def upscale(self, images: tf.Tensor, finish: Finish, dtype: tf.DType) -> tf.Tensor:
        """[N, h, w, 3], float32 in [0, 1] or uint8 -> finish(generator output) [N, scale*h, scale*w, 3], one
        image after the other, all written in place into one output buffer (so a request holds its output
        once). uint8 input is made float window by window, so the request is never held as float32."""
        if self.trunk is None:  # untiled: the model's own output, whatever its scale
            return finish(self.model(_unit(images), training=False))
        s, channels = self.scale, 3
        n, h, w = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
        out = _fresh([n * s * h, s * w, channels], dtype)  # the images one above the other
        request_pixels = tf.cast(n, tf.float64) * tf.cast(h, tf.float64) * tf.cast(w, tf.float64)
        tail_tile = tf.where(request_pixels <= self.whole_pixels, self.small_tail_tile, self.tail_tile)

        def one(i, out):
            return i + 1, self._upscale_into(out, i * s * h, images[i:i + 1], finish, dtype, tail_tile)

        _, out = tf.while_loop(lambda i, _: i < n, one, (0, out), parallel_iterations=1)
        return tf.reshape(out, [n, s * h, s * w, channels])  # a view: no copy

    def _upscale_into(self, out: tf.Tensor, first_row, lr: tf.Tensor, finish: Finish, dtype: tf.DType, tail_tile):
        """`out` with the output of lr [1, h, w, 3] written into its rows from `first_row` on, the tail on cores of
        `tail_tile` pixels."""
        s, channels = self.scale, 3
        h, w = tf.shape(lr)[1], tf.shape(lr)[2]
        whole = (0, h, 0, w)
        if self.tail is None:
            def one(ins, core):
                return finish(_crop(self.trunk(_unit(ins[0]), training=False), core, s))

            return _tiled(one, [lr], whole, self.trunk_tile, self.trunk_margin, s, channels, dtype, out, first_row)

        def tail(ins, core):
            return finish(_crop(self.tail(ins, training=False), core, s))

        def window(ins, core):
            lr_window = _unit(ins[0])
            features = self.trunk(lr_window, training=False)
            return _tiled(tail, [features, lr_window], core, tail_tile, self.tail_margin, s, channels, dtype)

        trunk_tile = tf.where(tf.cast(h, tf.float64) * tf.cast(w, tf.float64) <= self.whole_pixels,
                              tf.maximum(h, w), self.trunk_tile)
        return _tiled(window, [lr], whole, trunk_tile, self.trunk_margin, s, channels, dtype, out, first_row)


def tiled_graph(model: keras.Model) -> TiledGraph:
    """The tile plan for `model` (LR [N, h, w, 3] in [0, 1] -> [N, s*h, s*w, 3] in [-1, 1]): two levels for a
    generator with a `skip_add` layer (srgan_tf.models, in either inference form), one level for another model
    whose receptive radius is known (tiling.receptive_radius), none otherwise."""
    try:
        radius, scale = receptive_radius(model)
    except TilingError:
        return whole_image(model)
    names = {layer.name for layer in model.layers}
    if TRUNK_OUTPUT not in names:
        return TiledGraph(model, None, scale, radius, 0, 0, DEFAULT_TILE, 0, model)
    features = model.get_layer(TRUNK_OUTPUT).output
    trunk = keras.Model(model.inputs[0], features, name=f"{model.name}_trunk")
    tail = keras.Model([features, model.inputs[0]], model.outputs[0], name=f"{model.name}_tail")
    trunk_radius, tail_radius = receptive_radius(trunk)[0], receptive_radius(tail)[0]
    sizes = [two_level_sizes(int(features.shape[-1]), scale, trunk_radius, tail_radius, budget)
             for budget in (TRUNK_BUDGET_BYTES, TAIL_BUDGET_BYTES, SMALL_TAIL_BUDGET_BYTES)]
    (whole, trunk_tile, _), (_, _, tail_tile), (_, _, small_tail_tile) = sizes
    return TiledGraph(trunk, tail, scale, trunk_radius + tail_radius, tail_radius,
                      max(int(whole), WHOLE_TRUNK_PIXELS), trunk_tile, tail_tile, model, small_tail_tile)


def whole_image(model: keras.Model) -> TiledGraph:
    """No tiling: `model` on the whole image (the graph exports had before in-graph tiling; for comparisons)."""
    return TiledGraph(None, None, 1, 0, 0, 0, 0, 0, model)
