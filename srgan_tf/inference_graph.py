"""The generator's inference graph: the same function as `models.build_generator`'s, computed faster, and split
into the part that runs at LR resolution (the trunk) and the upsampling tail, for tiling.

The paper's output layer, a 9x9 convolution from 64 channels to 3 at HR resolution, ran at 17% of this CPU's
matmul rate and took 36% of the generator's convolution time (BENCHMARKS.md): three output channels make a
matmul too thin to use the machine. It is computed here as a 5x5 convolution from 256 channels to 12 on the
tensor *before* the last pixel shuffle, followed by that shuffle. This is exactly the same function:
- PReLU is per channel and the shuffle only moves values, so PReLU after the shuffle equals PReLU before it
  with each alpha repeated for the four sub-pixel positions;
- an HR output pixel (2p + a, 2q + b) reads HR pixels 2p + a - 4 .. 2p + a + 4, which lie in pre-shuffle
  rows p - 2 .. p + 2, so a 5x5 kernel over the 4 sub-pixel phases holds every 9x9 tap once (the other
  entries are zero), and the zero padding of either form is zero in the other;
- tanh is per value, so it commutes with the shuffle.
It has 23% more multiply-adds but runs several times faster (a matmul 12 wide over 6,400 inputs instead of
3 wide over 5,184). The trained weights and `.keras` files are unchanged: this graph is built from them
when a model is loaded for inference (Keras, and the SavedModel and TFLite exports).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from srgan_tf.models import BicubicUpsample, PixelShuffle
from srgan_tf.tiling import SplitGenerator, receptive_radius

TRUNK_OUTPUT = "skip_add"  # the last layer at LR resolution in build_generator's graph
PRECISIONS = ("float32", "bfloat16")


class GraphError(ValueError):
    """A model that is not a generator built by `models.build_generator`."""


def _layer(model: keras.Model, name: str):
    try:
        return model.get_layer(name)
    except ValueError:
        raise GraphError(f"{model.name}: no layer {name!r} (not a generator of srgan_tf.models)") from None


def _stages(model: keras.Model) -> int:
    names = {layer.name for layer in model.layers}
    stages = 0
    while f"up{stages + 1}_conv" in names:
        stages += 1
    if not stages:
        raise GraphError(f"{model.name}: no upsampling stage (not a generator of srgan_tf.models)")
    return stages


def shuffled_output_kernel(kernel: np.ndarray, factor: int = 2) -> np.ndarray:
    """The [K', K', r*r*C, r*r*O] kernel on the pre-shuffle tensor equal to `kernel` [K, K, C, O] ('same',
    stride 1, odd K) on the shuffled one, with K' = 2 * ceil((K // 2) / r) + 1. Channel order is TF's
    depth-to-space: pre-shuffle channel (i * r + j) * C + c is pixel (i, j) of each r x r block."""
    k, _, c, o = kernel.shape
    r, half = factor, k // 2
    reach = -(-half // r)  # pre-shuffle pixels on each side
    out = np.zeros((2 * reach + 1, 2 * reach + 1, r * r * c, r * r * o), kernel.dtype)
    for a in range(r):  # output phase (row), b: output phase (column)
        for b in range(r):
            for i in range(r):  # input phase
                for j in range(r):
                    for u in range(2 * reach + 1):
                        for v in range(2 * reach + 1):
                            dy, dx = r * (u - reach) + i - a, r * (v - reach) + j - b  # offset at HR
                            if abs(dy) <= half and abs(dx) <= half:
                                out[u, v, (i * r + j) * c:(i * r + j + 1) * c,
                                    (a * r + b) * o:(a * r + b + 1) * o] = kernel[dy + half, dx + half]
    return out


def with_precision(model: keras.Model, precision: str) -> keras.Model:
    """`model` itself for "float32"; for "bfloat16" a copy with the same weights whose layers compute in
    bfloat16 (Keras' mixed_bfloat16 policy: float32 weights, bfloat16 math), except those that make the
    image itself, which stay float32 so that it is never rounded to bfloat16's ~3 significant digits: the
    bicubic skip and the sum with it, or, without the skip, the output convolution. Same input and output
    dtypes (float32) as `model`. Raises ValueError for another precision."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if precision == "float32":
        return model
    names = {layer.name for layer in model.layers}
    # With the bicubic skip the output convolution computes only the residual, which bfloat16 may round;
    # without it, it computes the image.
    pinned = {"bicubic", "bicubic_to_tanh_range", "bicubic_add"} & names or {"conv_out"}

    def clone(layer):
        config = layer.get_config()
        if layer.name not in pinned:
            config["dtype"] = "mixed_bfloat16"
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def _fast_tail(model: keras.Model, features, lr):
    """Applies the upsampling stages of `model` (its own layers) and the fast output layer to the tensors
    `features` (the trunk's output) and `lr` (the input, for the bicubic skip); returns the output tensor."""
    stages = _stages(model)
    skip = "bicubic" in {layer.name for layer in model.layers}
    x = features
    for u in range(1, stages):
        for name in (f"up{u}_conv", f"up{u}_shuffle", f"up{u}_prelu"):
            x = _layer(model, name)(x)
    x = _layer(model, f"up{stages}_conv")(x)
    alpha = np.asarray(_layer(model, f"up{stages}_prelu").get_weights()[0])  # [1, 1, C] (shared over space)
    policy = _layer(model, f"up{stages}_prelu").dtype_policy
    pre = layers.PReLU(shared_axes=[1, 2], dtype=policy, name=f"up{stages}_prelu_preshuffle")
    x = pre(x)
    pre.set_weights([np.tile(alpha, (1, 1, 4))])
    kernel, bias = (np.asarray(w) for w in _layer(model, "conv_out").get_weights())
    fast_kernel = shuffled_output_kernel(kernel)
    fast = layers.Conv2D(fast_kernel.shape[-1], fast_kernel.shape[0], padding="same",
                         activation=None if skip else "tanh", dtype=_layer(model, "conv_out").dtype_policy,
                         name="conv_out_preshuffle")
    x = fast(x)
    fast.set_weights([fast_kernel, np.tile(bias, 4)])
    sr = PixelShuffle(2, name="conv_out_shuffle")(x)
    if skip:
        base = BicubicUpsample(_layer(model, "bicubic").factor, name="bicubic")(lr)
        base = layers.Rescaling(2.0, offset=-1.0, dtype="float32", name="bicubic_to_tanh_range")(base)
        sr = layers.Add(dtype="float32", name="bicubic_add")([base, sr])
    return sr


def split_generator(model: keras.Model) -> tuple[keras.Model, keras.Model]:
    """(trunk, tail) of a `build_generator` model, for inference in float32.

    trunk: LR [N, h, w, 3] in [0, 1] -> features [N, h, w, filters] (conv_in ... skip_add, all at LR size).
    tail: [features, LR] -> [N, s*h, s*w, 3] in [-1, 1] (the upsampling stages and the output layer, the
    latter in the fast form of the module docstring). tail([trunk(x), x]) equals model(x) up to float32
    round-off. Both use `model`'s own layers (no copy of its weights). Raises GraphError for models of
    another shape."""
    trunk = keras.Model(model.inputs[0], _layer(model, TRUNK_OUTPUT).output, name=f"{model.name}_trunk")
    features = keras.Input(shape=(None, None, trunk.output.shape[-1]), name="features")
    lr = keras.Input(shape=(None, None, 3), name="lr")
    tail = keras.Model([features, lr], _fast_tail(model, features, lr), name=f"{model.name}_tail")
    return trunk, tail


def fast_generator(model: keras.Model) -> keras.Model:
    """One flat functional model equal to `model` (LR [N, h, w, 3] in [0, 1] -> [N, s*h, s*w, 3] in
    [-1, 1]) with the fast output layer: for whole-image inference and export. Raises GraphError like
    `split_generator`."""
    lr = model.inputs[0]
    return keras.Model(lr, _fast_tail(model, _layer(model, TRUNK_OUTPUT).output, lr), name=model.name)


def fast_parts(model: keras.Model) -> tuple[keras.Model, SplitGenerator]:
    """(`fast_generator(model)`'s function as one model, `split_for_tiling(model)`), with the fast tail built
    once for both: what an upscaler needs for whole images and for two-level tiles."""
    trunk, tail = split_generator(model)
    lr = keras.Input(shape=(None, None, 3), name="lr")
    return keras.Model(lr, tail([trunk(lr), lr]), name=model.name), _as_split(trunk, tail)


def split_for_tiling(model: keras.Model) -> SplitGenerator:
    """`split_generator(model)` as graph functions on numpy arrays with the radii that
    `tiling.upscale_two_level` needs; the tail's output is mapped from [-1, 1] to [0, 1]."""
    return _as_split(*split_generator(model))


def _as_split(trunk: keras.Model, tail: keras.Model) -> SplitGenerator:
    run_trunk = tf.function(lambda x: trunk(x, training=False), reduce_retracing=True)
    run_tail = tf.function(lambda f, x: tail([f, x], training=False), reduce_retracing=True)
    radius, scale = receptive_radius(tail)
    return SplitGenerator(
        trunk=lambda x: run_trunk(tf.convert_to_tensor(x, tf.float32)).numpy(),
        tail=lambda f, x: (run_tail(tf.convert_to_tensor(f), tf.convert_to_tensor(x, tf.float32)).numpy() + 1) / 2,
        trunk_radius=receptive_radius(trunk)[0], tail_radius=radius, features=int(trunk.output.shape[-1]),
        scale=scale)
