"""SRGAN losses (paper Sec. 2.2): content losses (eq. 4, eq. 5) and the adversarial losses (eq. 6).

All image arguments are float32 [N, H, W, 3] in [-1, 1], the generator's output range; logits are the
discriminator's raw outputs [N, 1].
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
from keras import ops

from srgan_tf.errors import ArgumentError, first_line

CONTENT_LOSSES = ("mse", "vgg22", "vgg54")
# phi_i,j of the paper: the feature map after the j-th convolution (and its ReLU) before the i-th max-pool.
VGG_LAYERS = {"vgg22": "block2_conv2", "vgg54": "block5_conv4"}
VGG19_NOTOP_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
# keras.applications' ImageNet "caffe" preprocessing: BGR channel means.
_IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)


class WeightsUnavailableError(RuntimeError):
    """The VGG19 ImageNet weights are not on this machine and cannot be downloaded."""


def pixel_mse(hr, sr):
    """Pixel-wise MSE content loss (eq. 4), averaged over the batch; images in [-1, 1]."""
    return ops.mean(ops.square(hr - sr))


def generator_adversarial_loss(fake_logits):
    """Non-saturating generator loss -log D(G(I_LR)) (eq. 6), from logits, averaged over the batch."""
    return ops.mean(ops.softplus(-fake_logits))


def discriminator_loss(real_logits, fake_logits):
    """Binary cross-entropy of D on real (label 1) and generated (label 0) images, from logits."""
    return ops.mean(ops.softplus(-real_logits)) + ops.mean(ops.softplus(fake_logits))


def vgg19_cache_path() -> Path:
    keras_home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    return Path(keras_home) / "models" / VGG19_NOTOP_FILE


def load_vgg19(weights: str = "imagenet") -> keras.Model:
    """VGG19 without its classifier, input [N, H, W, 3] in Keras' caffe preprocessing, any H and W.

    `weights` is "imagenet" (Keras' cache, downloaded there if missing and the network allows), a path to the
    no-top .h5 weights file, or "random" (only for tests and smoke runs: the loss is then meaningless).
    Raises WeightsUnavailableError with instructions when ImageNet weights cannot be had.
    """
    kwargs = {"include_top": False, "input_shape": (None, None, 3)}
    if weights == "random":
        return keras.applications.VGG19(weights=None, **kwargs)
    if weights == "imagenet":
        try:
            return keras.applications.VGG19(weights="imagenet", **kwargs)
        except Exception as e:  # Keras raises several kinds of network errors here
            raise WeightsUnavailableError(
                f"VGG19 ImageNet weights are not in Keras' cache and could not be downloaded ({type(e).__name__}: "
                f"{first_line(e)}). "
                f"Place {VGG19_NOTOP_FILE} at {vgg19_cache_path()} or set --config.loss.vgg_weights=/path/to/it, "
                "or use a content loss that needs no weights (mse)."
            ) from None
    if not Path(weights).is_file():
        raise WeightsUnavailableError(f"VGG19 weights file {weights} does not exist (config.loss.vgg_weights)")
    return keras.applications.VGG19(weights=weights, **kwargs)


class VGGContentLoss:
    """The VGG content loss l_VGG/i,j (eq. 5) on a frozen VGG19.

    Feature maps are multiplied by `feature_scale` before the squared difference. The paper rescales by
    ~1/12.75 "to obtain VGG losses of a scale comparable to the MSE loss"; like the common reimplementations we
    average over channels as well as positions (eq. 5 normalises by W*H only), which only changes the constant.
    """

    def __init__(self, layer: str = "vgg54", weights: str = "imagenet", feature_scale: float = 1 / 12.75):
        if layer not in VGG_LAYERS:
            raise ValueError(f"VGG layer must be one of {tuple(VGG_LAYERS)}, got {layer!r}")
        vgg = load_vgg19(weights)
        self.features = keras.Model(vgg.input, vgg.get_layer(VGG_LAYERS[layer]).output, name=f"vgg19_{layer}")
        self.features.trainable = False
        self.feature_scale = float(feature_scale)

    def _phi(self, images):
        x = (images + 1.0) * 127.5  # [-1, 1] -> [0, 255]
        x = ops.flip(x, axis=-1) - ops.convert_to_tensor(_IMAGENET_BGR_MEAN, dtype=x.dtype)
        return ops.cast(self.features(x, training=False), "float32") * self.feature_scale

    def __call__(self, hr, sr):
        return ops.mean(ops.square(ops.stop_gradient(self._phi(hr)) - self._phi(sr)))


def make_content_loss(name: str, vgg_weights: str = "imagenet", vgg_feature_scale: float = 1 / 12.75):
    """Returns a callable (hr, sr) -> scalar for "mse", "vgg22" or "vgg54"."""
    if name == "mse":
        return pixel_mse
    if name in VGG_LAYERS:
        return VGGContentLoss(name, vgg_weights, vgg_feature_scale)
    raise ArgumentError("content_loss", f"must be one of {CONTENT_LOSSES}, got {name!r}")
