"""The SRGAN networks of Ledig et al. (CVPR 2017), Figure 4, as Keras 3 functional models.

Ranges (paper, Sec. 3.2): the generator takes low-resolution images in [0, 1] and returns high-resolution
images in [-1, 1] (tanh); the discriminator takes high-resolution images in [-1, 1] and returns one logit
per image (the sigmoid lives in the loss, which is numerically safer).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from srgan_tf.errors import check
from srgan_tf.imresize import resize_matrix

SUPPORTED_SCALES = (2, 4, 8)


@keras.saving.register_keras_serializable(package="srgan_tf")
class PixelShuffle(layers.Layer):
    """Sub-pixel convolution rearrangement (Shi et al., 2016): [N, H, W, C*r*r] -> [N, H*r, W*r, C].

    Lowers to a single depth-to-space op, which TF Serving and TFLite run natively.
    """

    def __init__(self, factor: int = 2, **kwargs):
        super().__init__(**kwargs)
        if factor < 1:
            raise ValueError(f"PixelShuffle factor must be >= 1, got {factor}")
        self.factor = int(factor)

    def call(self, inputs):
        return keras.ops.depth_to_space(inputs, self.factor, data_format="channels_last")

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        r = self.factor
        return (n, None if h is None else h * r, None if w is None else w * r, None if c is None else c // (r * r))

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


@keras.saving.register_keras_serializable(package="srgan_tf")
class BicubicUpsample(layers.Layer):
    """MATLAB-bicubic upscaling by an integer factor: [N, H, W, C] -> [N, H*r, W*r, C], float32.

    Equals `srgan_tf.imresize.imresize(x, factor)` on float images (same Keys kernel, a = -0.5, replicated
    borders) up to float32 rounding, but is built from ops that TF Serving and TFLite run natively (slices,
    concat, one fixed 5x5 convolution, depth-to-space), so a generator holding it exports everywhere.
    It has no weights.
    """

    def __init__(self, factor: int = 4, **kwargs):
        kwargs.setdefault("dtype", "float32")  # an image, not a feature map: bfloat16 would quantise it
        super().__init__(**kwargs)
        if factor < 1:
            raise ValueError(f"BicubicUpsample factor must be >= 1, got {factor}")
        self.factor = int(factor)
        with tf.init_scope():  # a constant, even when the layer is first built inside a tf.function
            # Upscaling by r, LR pixel k feeds output pixels r*k .. r*k + r-1 through taps k-2 .. k+2; in a
            # 5-pixel line, k = 2 has all its taps inside, so its rows are the interior weights.
            self._taps = resize_matrix(5, self.factor).numpy()[2 * self.factor:3 * self.factor]  # [phase, tap]
        self._kernels = {}

    def _kernel(self, channels: int) -> np.ndarray:
        if channels not in self._kernels:
            r, taps = self.factor, self._taps
            kernel = np.zeros((5, 5, channels, r * r * channels), np.float32)
            for py in range(r):
                for px in range(r):
                    for c in range(channels):  # depth-to-space reads channel (py*r + px)*C + c
                        kernel[:, :, c, (py * r + px) * channels + c] = np.outer(taps[py], taps[px])
            self._kernels[channels] = kernel
        return self._kernels[channels]

    def call(self, inputs):
        ops = keras.ops
        x = inputs
        # Replicate two border pixels on each side, as MATLAB's imresize does.
        x = ops.concatenate([x[:, :1], x[:, :1], x, x[:, -1:], x[:, -1:]], axis=1)
        x = ops.concatenate([x[:, :, :1], x[:, :, :1], x, x[:, :, -1:], x[:, :, -1:]], axis=2)
        kernel = ops.convert_to_tensor(self._kernel(inputs.shape[-1]), dtype=x.dtype)
        y = ops.conv(x, kernel, strides=1, padding="valid", data_format="channels_last")
        return ops.depth_to_space(y, self.factor, data_format="channels_last")

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        r = self.factor
        return (n, None if h is None else h * r, None if w is None else w * r, c)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


def _prelu(name: str) -> layers.PReLU:
    # One alpha per channel, shared over space (paper: "PReLU"); 0.25 is He et al.'s (2015) initial value.
    return layers.PReLU(
        alpha_initializer=keras.initializers.Constant(0.25), shared_axes=[1, 2], name=name
    )


def build_generator(num_blocks: int = 16, filters: int = 64, scale: int = 4, bn_momentum: float = 0.9,
                    batch_norm: bool = True, bicubic_skip: bool = False, synchronized_bn: bool = False,
                    name: str = "srresnet") -> keras.Model:
    """The SRResNet generator G (paper Fig. 4, top).

    Returns an uncompiled functional model mapping float32 [N, h, w, 3] in [0, 1] to float32
    [N, scale*h, scale*w, 3] in [-1, 1], for any h and w. With the defaults it has 1,554,883 parameters
    (BatchNormalization moving statistics included). `scale` must be 2, 4 or 8 (one x2 sub-pixel stage each).
    The paper does not give BatchNormalization's momentum; 0.9 (PyTorch's default) keeps the inference-mode
    statistics current in short runs, where Keras' 0.99 lags far behind the weights.
    `batch_norm=False` drops every BatchNormalization layer of G (a deviation from the paper, as EDSR and
    ESRGAN do: 1,546,435 parameters); D keeps its own.
    `bicubic_skip=True` (a deviation from the paper, in the spirit of VDSR's global residual learning) adds
    the MATLAB-bicubic upscaling of the input to a linear, zero-initialised last convolution in place of the
    tanh: the untrained G is exactly bicubic interpolation, and training learns only the residual. Its output
    is then not bounded to [-1, 1]; it adds no parameters.
    `synchronized_bn=True` makes BatchNormalization use the statistics of the global batch when trained on
    several replicas (tf.distribute); it changes nothing on one device.
    """
    check(scale in SUPPORTED_SCALES, "scale", f"must be one of {SUPPORTED_SCALES}, got {scale}")
    check(num_blocks >= 1, "num_blocks", f"must be >= 1, got {num_blocks}")
    check(filters >= 1, "filters", f"must be >= 1, got {filters}")
    check(0 <= bn_momentum < 1, "bn_momentum", f"must be in [0, 1), got {bn_momentum}")

    def bn(layer_name, y):
        if not batch_norm:
            return y
        return layers.BatchNormalization(momentum=bn_momentum, synchronized=synchronized_bn, name=layer_name)(y)

    lr = keras.Input(shape=(None, None, 3), name="lr")
    x = layers.Conv2D(filters, 9, padding="same", name="conv_in")(lr)
    x = skip = _prelu("prelu_in")(x)

    for b in range(1, num_blocks + 1):
        y = layers.Conv2D(filters, 3, padding="same", name=f"res{b}_conv1")(x)
        y = bn(f"res{b}_bn1", y)
        y = _prelu(f"res{b}_prelu")(y)
        y = layers.Conv2D(filters, 3, padding="same", name=f"res{b}_conv2")(y)
        y = bn(f"res{b}_bn2", y)
        x = layers.Add(name=f"res{b}_add")([x, y])

    x = layers.Conv2D(filters, 3, padding="same", name="conv_mid")(x)
    x = bn("bn_mid", x)
    x = layers.Add(name="skip_add")([skip, x])

    for u in range(1, scale.bit_length()):
        x = layers.Conv2D(filters * 4, 3, padding="same", name=f"up{u}_conv")(x)
        x = PixelShuffle(2, name=f"up{u}_shuffle")(x)
        x = _prelu(f"up{u}_prelu")(x)

    # float32 even under a mixed-precision policy: bfloat16 would quantise the image to ~1/256 steps.
    if not bicubic_skip:
        sr = layers.Conv2D(3, 9, padding="same", activation="tanh", dtype="float32", name="conv_out")(x)
        return keras.Model(lr, sr, name=name)
    residual = layers.Conv2D(3, 9, padding="same", kernel_initializer="zeros", dtype="float32", name="conv_out")(x)
    base = BicubicUpsample(scale, name="bicubic")(lr)
    base = layers.Rescaling(2.0, offset=-1.0, dtype="float32", name="bicubic_to_tanh_range")(base)
    sr = layers.Add(dtype="float32", name="bicubic_add")([base, residual])
    return keras.Model(lr, sr, name=name)


def build_discriminator(hr_size: int = 96, bn_momentum: float = 0.9, synchronized_bn: bool = False,
                        name: str = "discriminator") -> keras.Model:
    """The SRGAN discriminator D (paper Fig. 4, bottom).

    Returns an uncompiled functional model mapping float32 [N, hr_size, hr_size, 3] in [-1, 1] to
    [N, 1] logits (not probabilities). Eight 3x3 convolutions 64-64-128-128-256-256-512-512 with strides
    1,2,1,2,..., BatchNormalization after all but the first, LeakyReLU(0.2), then Dense(1024), LeakyReLU(0.2),
    Dense(1). `hr_size` must be a positive multiple of 16 (four stride-2 stages). `synchronized_bn`: as in
    `build_generator`.
    """
    check(hr_size >= 16 and hr_size % 16 == 0, "hr_size", f"must be a positive multiple of 16, got {hr_size}")
    check(0 <= bn_momentum < 1, "bn_momentum", f"must be in [0, 1), got {bn_momentum}")
    hr = keras.Input(shape=(hr_size, hr_size, 3), name="hr")
    x = hr
    for i, width in enumerate((64, 64, 128, 128, 256, 256, 512, 512), start=1):
        x = layers.Conv2D(width, 3, strides=1 + (i + 1) % 2, padding="same", name=f"conv{i}")(x)
        if i > 1:
            x = layers.BatchNormalization(momentum=bn_momentum, synchronized=synchronized_bn, name=f"bn{i}")(x)
        x = layers.LeakyReLU(negative_slope=0.2, name=f"lrelu{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(1024, name="dense1")(x)
    x = layers.LeakyReLU(negative_slope=0.2, name="lrelu_dense")(x)
    logits = layers.Dense(1, dtype="float32", name="logits")(x)
    return keras.Model(hr, logits, name=name)


def float32_copy(model: keras.Model) -> keras.Model:
    """A copy of `model` (one of this module's, built under any precision policy and strategy) that computes in
    float32, with unsynchronized BatchNormalization and `model`'s weights: the plain model an inference user
    loads. Its config is the one `model`'s builder makes under the float32 policy."""
    def plain(layer: keras.layers.Layer) -> keras.layers.Layer:
        config = layer.get_config() | {"dtype": "float32"}
        if "synchronized" in config:
            config["synchronized"] = False
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=plain)
    copy.set_weights(model.get_weights())
    return copy
