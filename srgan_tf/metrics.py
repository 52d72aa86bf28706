"""PSNR and SSIM as the super-resolution literature reports them, in TensorFlow ops.

Protocol: both images go to the Y (luma) channel of ITU-R BT.601 as MATLAB's `rgb2ycbcr` computes it on
double images (Y in [16, 235], not rounded), `shave` pixels are cut from every border, and PSNR and SSIM are
computed on the 0-255 range. SSIM is Wang et al.'s (2004): an 11x11 Gaussian window with sigma 1.5,
K1 = 0.01, K2 = 0.03, 'valid' filtering, mean of the SSIM map. A single-channel image is its own Y.

Inputs are batches [N, H, W, C] (C = 3 or 1) or single images [H, W, C]: uint8 images hold values in
[0, 255], floating-point images in [0, 1]. The TF functions return one float64 value per image.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

# BT.601 luma coefficients for R, G, B in [0, 1] giving Y in [16, 235] (MATLAB's rgb2ycbcr).
_Y_WEIGHTS = (65.481, 128.553, 24.966)
_SSIM_SIZE = 11
_SSIM_SIGMA = 1.5
_SSIM_C1 = (0.01 * 255.0) ** 2
_SSIM_C2 = (0.03 * 255.0) ** 2


def _to_255(images) -> tf.Tensor:
    images = tf.convert_to_tensor(images)
    if images.shape.rank == 3:
        images = images[None]
    if images.shape.rank != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"expected images [N, H, W, 3] or [N, H, W, 1], got shape {images.shape}")
    x = tf.cast(images, tf.float64)
    return x if images.dtype == tf.uint8 else x * 255.0


def luma(images) -> tf.Tensor:
    """BT.601 Y of uint8 ([0, 255]) or float ([0, 1]) images, as float64 [N, H, W, 1] on the 0-255 scale.

    RGB gives Y in [16, 235] (MATLAB's rgb2ycbcr on doubles, times 255); one channel is returned as is.
    """
    x = _to_255(images)
    if x.shape[-1] == 1:
        return x
    w = tf.constant(_Y_WEIGHTS, tf.float64) / 255.0
    return 16.0 + tf.reduce_sum(x * w, axis=-1, keepdims=True)


def gray(images) -> tf.Tensor:
    """Full-range BT.601 luma (0.299 R + 0.587 G + 0.114 B), float64 [N, H, W, 1] on the 0-255 scale.

    For an image whose three channels are equal it returns that channel exactly, so a grayscale image
    stored as RGB can be scored on its own values.
    """
    x = _to_255(images)
    if x.shape[-1] == 1:
        return x
    w = tf.constant(_Y_WEIGHTS, tf.float64) / sum(_Y_WEIGHTS)
    return tf.reduce_sum(x * w, axis=-1, keepdims=True)


def _prepare(sr, hr, shave: int, as_gray: bool) -> tuple[tf.Tensor, tf.Tensor]:
    to_y = gray if as_gray else luma
    a, b = to_y(sr), to_y(hr)
    if a.shape.is_fully_defined() and b.shape.is_fully_defined():
        if a.shape != b.shape:
            raise ValueError(f"sr and hr must have the same shape, got {sr.shape} and {hr.shape}")
    else:
        tf.debugging.assert_equal(tf.shape(a), tf.shape(b), message="sr and hr must have the same shape")
    if shave:
        a = a[:, shave:-shave, shave:-shave]
        b = b[:, shave:-shave, shave:-shave]
    return a, b


def psnr(sr, hr, shave: int = 4, as_gray: bool = False) -> tf.Tensor:
    """Y-channel PSNR in dB of each image pair, float64 [N], after cutting `shave` pixels off every border.

    `sr` and `hr` have the same shape; see the module docstring for dtypes. Identical images give +inf.
    `as_gray=True` scores full-range luma instead of Y (for grayscale ground truth stored as RGB).
    """
    a, b = _prepare(sr, hr, shave, as_gray)
    mse = tf.reduce_mean(tf.square(a - b), axis=[1, 2, 3])
    return 10.0 * tf.math.log(255.0**2 / mse) / tf.math.log(tf.constant(10.0, tf.float64))


def _gaussian_filter(x: tf.Tensor) -> tf.Tensor:
    # Separable form of MATLAB's fspecial('gaussian', 11, 1.5), applied with 'valid' borders.
    r = tf.range(_SSIM_SIZE, dtype=tf.float64) - (_SSIM_SIZE - 1) / 2.0
    g = tf.exp(-(r * r) / (2.0 * _SSIM_SIGMA**2))
    g = g / tf.reduce_sum(g)
    x = tf.nn.conv2d(x, tf.reshape(g, [_SSIM_SIZE, 1, 1, 1]), strides=1, padding="VALID")
    return tf.nn.conv2d(x, tf.reshape(g, [1, _SSIM_SIZE, 1, 1]), strides=1, padding="VALID")


def ssim(sr, hr, shave: int = 4, as_gray: bool = False) -> tf.Tensor:
    """Y-channel SSIM of each image pair, float64 [N], after cutting `shave` pixels off every border.

    Wang et al.'s index (11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, 'valid' filtering) on the
    0-255 range, averaged over the SSIM map. Images must be at least 11x11 after shaving.
    """
    a, b = _prepare(sr, hr, shave, as_gray)
    mu_a, mu_b = _gaussian_filter(a), _gaussian_filter(b)
    var_a = _gaussian_filter(a * a) - mu_a * mu_a
    var_b = _gaussian_filter(b * b) - mu_b * mu_b
    cov = _gaussian_filter(a * b) - mu_a * mu_b
    num = (2.0 * mu_a * mu_b + _SSIM_C1) * (2.0 * cov + _SSIM_C2)
    den = (mu_a * mu_a + mu_b * mu_b + _SSIM_C1) * (var_a + var_b + _SSIM_C2)
    return tf.reduce_mean(num / den, axis=[1, 2, 3])


def psnr_ssim(sr: np.ndarray, hr: np.ndarray, shave: int = 4, as_gray: bool = False) -> tuple[float, float]:
    """PSNR (dB) and SSIM of one image pair [H, W, C] as Python floats; see `psnr` and `ssim`."""
    return (
        float(psnr(sr, hr, shave, as_gray)[0].numpy()),
        float(ssim(sr, hr, shave, as_gray)[0].numpy()),
    )
