"""Bicubic resizing that reproduces MATLAB's `imresize(img, scale, 'bicubic')`, in TensorFlow ops.

The super-resolution literature makes its low-resolution inputs (and its bicubic baseline) with MATLAB, so
the "matlab" method here follows MATLAB's algorithm step by step: Keys' cubic kernel with a = -0.5, a kernel
widened by 1/scale when shrinking (antialiasing), MATLAB's output-pixel-to-input-pixel mapping, replicated
borders, output size ceil(scale * input size), height resized before width, and, for uint8 images, rounding
and clipping to uint8 after each of the two passes. It is built from plain TF ops, so it runs eagerly, inside
`tf.function` and inside `tf.data` pipelines with images of unknown size.

`resize(..., method="pil" | "tf")` offers Pillow's and TensorFlow's antialiased bicubic with the same output
size, for comparing degradations.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

METHODS = ("matlab", "pil", "tf")

_KERNEL_WIDTH = 4.0  # support of the cubic kernel, [-2, 2]

# Where taps beyond the border read. The literature's LR files (SelfExSR's Set5/Set14, made with MATLAB's
# imresize) equal edge-clamped taps exactly and differ from mirrored ones in the first and last two rows and
# columns of a 4x reduction, so "replicate" is the default. MATLAB R2021a's NIQE reference (5.7296 on Set14's
# baboon) is met only with mirrored taps in its half-size pass (edge-clamped taps give 5.7191), so NIQE uses
# "symmetric".
BORDERS = ("replicate", "symmetric")


def _check_scale(scale: float) -> float:
    scale = float(scale)
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a positive number, got {scale}")
    return scale


def _out_size(size: tf.Tensor, scale: float) -> tf.Tensor:
    # Same double arithmetic as MATLAB's ceil(scale * size), so e.g. 1/3 of 300 rounds as MATLAB does.
    return tf.cast(tf.math.ceil(tf.cast(size, tf.float64) * scale), tf.int32)


def _static_out_size(size: int | None, scale: float) -> int | None:
    return None if size is None else math.ceil(size * scale)


def _cubic(x: tf.Tensor) -> tf.Tensor:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's 'bicubic')."""
    ax = tf.abs(x)
    ax2 = ax * ax
    ax3 = ax2 * ax
    near = 1.5 * ax3 - 2.5 * ax2 + 1.0
    far = -0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0
    return tf.where(ax <= 1.0, near, tf.where(ax <= 2.0, far, tf.zeros_like(ax)))


def resize_matrix(in_size: tf.Tensor | int, scale: float, borders: str = "replicate") -> tf.Tensor:
    """The float64 [ceil(scale * in_size), in_size] matrix M with `out = M @ in` along one dimension.

    Row i holds MATLAB's normalised bicubic weights of output pixel i, so every row sums to 1. Taps that
    fall outside the image are moved onto the nearest edge pixel (`borders="replicate"`), or mirrored back
    into it, the edge pixel repeated (`"symmetric"`); see BORDERS.
    """
    scale = _check_scale(scale)
    if borders not in BORDERS:
        raise ValueError(f"unknown borders {borders!r}; valid: {', '.join(BORDERS)}")
    in_size = tf.cast(in_size, tf.int32)
    out_size = _out_size(in_size, scale)
    shrinking = scale < 1.0
    kernel_width = _KERNEL_WIDTH / scale if shrinking else _KERNEL_WIDTH
    taps = math.ceil(kernel_width) + 2

    # MATLAB works with 1-based coordinates: output pixel x maps to input position u.
    x = tf.range(1, out_size + 1, dtype=tf.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = tf.floor(u - kernel_width / 2.0)
    index = left[:, None] + tf.range(taps, dtype=tf.float64)[None, :]
    distance = u[:, None] - index
    # Antialiasing: a kernel stretched by 1/scale, with its height scaled to keep unit area.
    weights = scale * _cubic(scale * distance) if shrinking else _cubic(distance)
    weights = weights / tf.reduce_sum(weights, axis=1, keepdims=True)

    index = tf.cast(index, tf.int32) - 1
    if borders == "replicate":
        inside = tf.clip_by_value(index, 0, in_size - 1)
    else:  # [0 .. n-1, n-1 .. 0], repeated
        mirror = tf.concat([tf.range(in_size), tf.range(in_size - 1, -1, -1)], axis=0)
        inside = tf.gather(mirror, tf.math.floormod(index, 2 * in_size))
    rows = tf.broadcast_to(tf.range(out_size)[:, None], tf.shape(inside))
    # Several out-of-range taps land on the same pixel; scatter_nd adds their weights up.
    return tf.scatter_nd(tf.stack([rows, inside], axis=-1), weights, tf.stack([out_size, in_size]))


def _as_batch(image) -> tuple[tf.Tensor, bool]:
    image = tf.convert_to_tensor(image)
    rank = image.shape.rank
    if rank not in (3, 4):
        raise ValueError(f"expected an image [H, W, C] or a batch [N, H, W, C], got shape {image.shape}")
    if image.dtype != tf.uint8 and not image.dtype.is_floating:
        raise TypeError(f"expected a uint8 or floating-point image, got {image.dtype.name}")
    return (image[None] if rank == 3 else image), rank == 3


def _round_uint8(x: tf.Tensor) -> tf.Tensor:
    # Round half up after clipping, as MATLAB's conversion to uint8 does for non-negative values.
    return tf.floor(tf.clip_by_value(x, 0.0, 255.0) + 0.5)


def _matlab(images: tf.Tensor, scale: float, borders: str = "replicate") -> tf.Tensor:
    is_uint8 = images.dtype == tf.uint8
    x = tf.cast(images, tf.float64)
    shape = tf.shape(images)
    x = tf.einsum("oh,nhwc->nowc", resize_matrix(shape[1], scale, borders), x)
    if is_uint8:
        x = _round_uint8(x)
    x = tf.einsum("ow,nhwc->nhoc", resize_matrix(shape[2], scale, borders), x)
    if is_uint8:
        x = _round_uint8(x)
    return tf.cast(x, images.dtype)


def _pil(images: tf.Tensor, scale: float) -> tf.Tensor:
    from PIL import Image

    def run(batch: np.ndarray) -> np.ndarray:
        n, h, w, c = batch.shape
        size = (math.ceil(w * scale), math.ceil(h * scale))
        # Pillow resamples one channel at a time in mode L (uint8) or F (float32).
        work = batch if batch.dtype == np.uint8 else batch.astype(np.float32)
        out = np.empty((n, size[1], size[0], c), dtype=work.dtype)
        for i in range(n):
            for ch in range(c):
                plane = Image.fromarray(np.ascontiguousarray(work[i, :, :, ch]))
                out[i, :, :, ch] = np.asarray(plane.resize(size, Image.Resampling.BICUBIC))
        return out.astype(batch.dtype)

    return tf.numpy_function(run, [images], images.dtype, stateful=False)


def _tf(images: tf.Tensor, scale: float) -> tf.Tensor:
    shape = tf.shape(images)
    size = tf.stack([_out_size(shape[1], scale), _out_size(shape[2], scale)])
    out = tf.image.resize(tf.cast(images, tf.float32), size, method="bicubic", antialias=True)
    if images.dtype == tf.uint8:
        out = _round_uint8(out)
    return tf.cast(out, images.dtype)


_METHODS = {"matlab": _matlab, "pil": _pil, "tf": _tf}


def resize(image, scale: float, method: str = "matlab") -> tf.Tensor:
    """Resizes `image` (uint8 or float, [H, W, C] or [N, H, W, C]) by `scale` with bicubic interpolation.

    The output has the input's dtype and rank and spatial size ceil(scale * H) x ceil(scale * W) for every
    method. `method` is one of METHODS: "matlab" (see `imresize`), "pil" (Pillow's BICUBIC, run through
    tf.numpy_function, so not serialisable into a SavedModel graph) or "tf" (tf.image.resize bicubic with
    antialiasing; uint8 results are rounded and clipped). Float images are not clipped.
    """
    return _resize(image, scale, method, "replicate")


def _resize(image, scale: float, method: str, borders: str) -> tf.Tensor:
    if method not in _METHODS:
        raise ValueError(f"unknown resize method {method!r}; valid methods are {', '.join(METHODS)}")
    if borders not in BORDERS:
        raise ValueError(f"unknown borders {borders!r}; valid: {', '.join(BORDERS)}")
    scale = _check_scale(scale)
    images, single = _as_batch(image)
    out = _matlab(images, scale, borders) if method == "matlab" else _METHODS[method](images, scale)
    n, h, w, c = images.shape
    out = tf.ensure_shape(out, [n, _static_out_size(h, scale), _static_out_size(w, scale), c])
    return out[0] if single else out


def imresize(image, scale: float, borders: str = "replicate") -> tf.Tensor:
    """MATLAB's `imresize(image, scale, 'bicubic')` (antialiased when shrinking), in TensorFlow ops.

    `image` is a uint8 or float array or tensor of shape [H, W, C] or [N, H, W, C] (any C; the rank must
    be known, the sizes may be dynamic). Returns a tensor of the same dtype and rank with spatial size
    ceil(scale * H) x ceil(scale * W). uint8 images are rounded and clipped to uint8 after each pass, as
    MATLAB does; float images (e.g. float32 in [0, 1]) are neither rounded nor clipped. Weights and sums
    are computed in float64. `borders` says where taps beyond the edge read (BORDERS).
    """
    return _resize(image, scale, "matlab", borders)


_STRIP_VALUES = 1 << 21  # float64 values per strip of resize_to's passes (16 MB)


def resize_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """MATLAB's `imresize(image, [height width], 'bicubic')` of [H, W, C] uint8, uint16 or float.

    Each axis uses srgan_tf.imresize's MATLAB weights for the scale new size / old size (antialiased when
    shrinking), height first; integer images are rounded and clipped to their dtype after each pass, as
    MATLAB does, floats are not. An axis whose size does not change is left as it is. With integer
    factors this equals srgan_tf.imresize.imresize. Memory: the result, one intermediate and a dense
    [new size, old size] float64 weight matrix per axis.
    """
    out = np.asarray(image)
    for axis, size in ((0, int(height)), (1, int(width))):
        n = out.shape[axis]
        if size != n:
            # ceil(size / n * n) may exceed `size` by one through float round-off: MATLAB keeps `size` rows.
            weights = resize_matrix(n, size / n).numpy()[:size]
            out = _resize_axis(out, weights, axis)
    return np.ascontiguousarray(out)


def _resize_axis(a: np.ndarray, weights: np.ndarray, axis: int) -> np.ndarray:
    """`weights` [new, old] applied along `axis` (0 or 1) of [H, W, C], in strips of the other axis."""
    moved = np.moveaxis(a, axis, 1)  # [strips, old, C]
    out = np.empty((moved.shape[0], weights.shape[0], a.shape[2]), a.dtype)
    step = max(1, _STRIP_VALUES // (max(weights.shape) * a.shape[2]))
    for i in range(0, moved.shape[0], step):
        block = weights @ moved[i:i + step].astype(np.float64)  # [step, new, C]
        if np.issubdtype(a.dtype, np.integer):
            block = np.floor(np.clip(block, 0, np.iinfo(a.dtype).max) + 0.5)
        out[i:i + step] = block
    return np.moveaxis(out, 1, axis)
