"""PSNR and SSIM as the super-resolution literature reports them, in TensorFlow ops.

Protocol: both images go to the Y (luma) channel of ITU-R BT.601 as MATLAB's `rgb2ycbcr` computes it on
double images (Y in [16, 235], not rounded), `shave` pixels are cut from every border, and PSNR and SSIM are
computed on the 0-255 range. SSIM is Wang et al.'s (2004): an 11x11 Gaussian window with sigma 1.5,
K1 = 0.01, K2 = 0.03, 'valid' filtering, mean of the SSIM map. A single-channel image is its own Y.

Inputs are batches [N, H, W, C] (C = 3 or 1) or single images [H, W, C]: uint8 images hold values in
[0, 255], floating-point images in [0, 1]. The TF functions return one float64 value per image.
"""

from __future__ import annotations

import functools
import io
import math
import warnings
from importlib import resources

import numpy as np
import tensorflow as tf

from srgan_tf.imresize import imresize

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
    """Each channel of x [N, H, W, C] filtered on its own: the separable form of MATLAB's
    fspecial('gaussian', 11, 1.5), applied with 'valid' borders."""
    r = tf.range(_SSIM_SIZE, dtype=tf.float64) - (_SSIM_SIZE - 1) / 2.0
    g = tf.exp(-(r * r) / (2.0 * _SSIM_SIGMA**2))
    g = g / tf.reduce_sum(g)
    g = tf.tile(g[:, None, None, None], [1, 1, x.shape[-1], 1])
    x = tf.nn.depthwise_conv2d(x, g, [1, 1, 1, 1], "VALID")
    return tf.nn.depthwise_conv2d(x, tf.transpose(g, [1, 0, 2, 3]), [1, 1, 1, 1], "VALID")


def ssim(sr, hr, shave: int = 4, as_gray: bool = False) -> tf.Tensor:
    """Y-channel SSIM of each image pair, float64 [N], after cutting `shave` pixels off every border.

    Wang et al.'s index (11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, 'valid' filtering) on the
    0-255 range, averaged over the SSIM map. Images must be at least 11x11 after shaving.
    """
    a, b = _prepare(sr, hr, shave, as_gray)
    # The five local moments in one pass: each a channel of the same filter.
    mu_a, mu_b, aa, bb, ab = tf.unstack(_gaussian_filter(tf.concat([a, b, a * a, b * b, a * b], -1)), axis=-1)
    var_a, var_b, cov = aa - mu_a * mu_a, bb - mu_b * mu_b, ab - mu_a * mu_b
    num = (2.0 * mu_a * mu_b + _SSIM_C1) * (2.0 * cov + _SSIM_C2)
    den = (mu_a * mu_a + mu_b * mu_b + _SSIM_C1) * (var_a + var_b + _SSIM_C2)
    return tf.reduce_mean(num / den, axis=[1, 2])


def psnr_ssim(sr: np.ndarray, hr: np.ndarray, shave: int = 4, as_gray: bool = False) -> tuple[float, float]:
    """PSNR (dB) and SSIM of one image pair [H, W, C] as Python floats; see `psnr` and `ssim`."""
    return (
        float(psnr(sr, hr, shave, as_gray)[0].numpy()),
        float(ssim(sr, hr, shave, as_gray)[0].numpy()),
    )


# NIQE (Mittal, Soundararajan and Bovik, "Making a Completely Blind Image Quality Analyzer", 2013), as MATLAB's
# `niqe` computes it against the pristine model of the NIQE software release (srgan_tf/niqe_model/, with its
# notice). Computed in numpy (float64); the half-size scale uses the project's MATLAB-exact imresize.
_NIQE_BLOCK = 96
_NIQE_WINDOW = 7
_NIQE_SIGMA = 7 / 6
_GAMMA_GRID = np.arange(0.2, 10.001, 0.001)  # the release's shape search grid, 0.2:0.001:10
_NIQE_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))


def _gamma(x: np.ndarray) -> np.ndarray:
    return np.exp(np.vectorize(math.lgamma)(x))


# rho(a) = Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a)): the ratio E[|x|]^2 / E[x^2] of a generalised Gaussian.
_RHO = _gamma(2 / _GAMMA_GRID) ** 2 / (_gamma(1 / _GAMMA_GRID) * _gamma(3 / _GAMMA_GRID))


@functools.cache
def _pristine_model() -> tuple[np.ndarray, np.ndarray]:
    folder = resources.files("srgan_tf") / "niqe_model"
    mu = np.loadtxt(io.StringIO((folder / "pristine_mu.txt").read_text())).reshape(-1)
    cov = np.loadtxt(io.StringIO((folder / "pristine_cov.txt").read_text()))
    return mu, cov


def _smooth(x: np.ndarray) -> np.ndarray:
    """MATLAB's imfilter(x, fspecial('gaussian', 7, 7/6), 'replicate'), as two separable 1-D passes."""
    r = np.arange(_NIQE_WINDOW) - (_NIQE_WINDOW - 1) / 2
    g = np.exp(-r * r / (2 * _NIQE_SIGMA**2))
    g /= g.sum()
    p = _NIQE_WINDOW // 2
    padded = np.pad(x, p, mode="edge")
    rows = sum(g[i] * padded[i:i + x.shape[0], :] for i in range(_NIQE_WINDOW))
    return sum(g[i] * rows[:, i:i + x.shape[1]] for i in range(_NIQE_WINDOW))


def _aggd(v: np.ndarray) -> tuple[float, float, float]:
    """Shape, left and right standard deviations of an asymmetric generalised Gaussian fitted to `v`."""
    left, right = np.sqrt(np.mean(v[v < 0] ** 2)), np.sqrt(np.mean(v[v > 0] ** 2))
    g = left / right
    rho = np.mean(np.abs(v)) ** 2 / np.mean(v * v)
    rho_norm = rho * (g**3 + 1) * (g + 1) / (g**2 + 1) ** 2
    return float(_GAMMA_GRID[np.argmin((_RHO - rho_norm) ** 2)]), float(left), float(right)


def _block_features(block: np.ndarray) -> list[float]:
    """The 18 NIQE features of one block of MSCN coefficients: the shape and mean spread of the coefficients'
    fit (the symmetric case of the AGGD estimator, as MATLAB's niqe fits it), then for each of 4 orientations
    the AGGD fit of neighbouring products: shape, mean, left and right spread."""
    shape, left, right = _aggd(block.reshape(-1))
    spread = math.sqrt(math.gamma(1 / shape) / math.gamma(3 / shape))  # standard deviation -> AGGD scale
    features = [shape, (left + right) / 2 * spread]
    for shift in _NIQE_SHIFTS:
        shape, left, right = _aggd((block * np.roll(block, shift, axis=(0, 1))).reshape(-1))
        spread = math.sqrt(math.gamma(1 / shape) / math.gamma(3 / shape))
        mean = (right - left) * spread * math.gamma(2 / shape) / math.gamma(1 / shape)
        features += [shape, mean, left * spread, right * spread]
    return features


def niqe_y(image: np.ndarray, as_gray: bool = False) -> np.ndarray:
    """The channel NIQE scores: MATLAB's rgb2ycbcr luma of uint8 RGB (full-range `gray` with `as_gray`; a
    one-channel image itself), rounded to integers as MATLAB's uint8 conversion does; float64 [H, W] on
    the 0-255 scale."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f"niqe wants a uint8 image, got {image.dtype}")
    if image.ndim == 2:
        return image.astype(np.float64)
    if image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise ValueError(f"expected an image [H, W, 3], [H, W, 1] or [H, W], got shape {image.shape}")
    return np.floor((gray if as_gray else luma)(image)[0, ..., 0].numpy() + 0.5)


def niqe(image: np.ndarray, shave: int = 0, as_gray: bool = False) -> float:
    """NIQE of one uint8 image ([H, W, 3] RGB, [H, W, 1] or [H, W] gray): lower is more natural.

    Follows MATLAB's `niqe`: the rounded Y channel (`niqe_y`; full-range luma with `as_gray`, as `psnr`
    scores grayscale files), `shave` pixels cut from every border, the image cropped to whole 96x96
    blocks, MSCN coefficients with a 7x7 Gaussian window (sigma 7/6), 18 features per block at full and
    half size (MATLAB-exact bicubic with mirrored borders, as R2021a's imresize inside niqe), and the
    distance between the multivariate Gaussian fitted to the blocks' features and the release's pristine
    model. Needs at least one 96x96 block (ValueError otherwise); a block of constant values has no fit
    and is left out (as MATLAB's nan-aware statistics do). It is not the Perceptual Index of PIRM 2018,
    which also needs Ma et al.'s learned regressor (not available offline); LPIPS and FID are not here
    either (they need ImageNet backbone weights).
    """
    y = niqe_y(image, as_gray)
    if shave:
        y = y[shave:-shave, shave:-shave]
    rows, cols = y.shape[0] // _NIQE_BLOCK, y.shape[1] // _NIQE_BLOCK
    if rows == 0 or cols == 0:
        raise ValueError(f"NIQE needs at least {_NIQE_BLOCK}x{_NIQE_BLOCK} pixels, got {y.shape[1]}x{y.shape[0]}")
    y = y[:rows * _NIQE_BLOCK, :cols * _NIQE_BLOCK]
    per_scale = []
    for scale in (1, 2):
        mu = _smooth(y)
        sigma = np.sqrt(np.abs(_smooth(y * y) - mu * mu))
        mscn = (y - mu) / (sigma + 1)
        b = _NIQE_BLOCK // scale
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a flat block: mean of an empty slice
            per_scale.append(np.array([_block_features(mscn[i * b:(i + 1) * b, j * b:(j + 1) * b])
                                       for i in range(rows) for j in range(cols)]))
        if scale == 1:
            y = imresize(y[..., None] / 255.0, 0.5, borders="symmetric").numpy()[..., 0] * 255.0
    features = np.concatenate(per_scale, axis=1)
    features = features[np.isfinite(features).all(axis=1)]
    if len(features) == 0:
        raise ValueError("NIQE has no block with texture to fit (the image is flat)")
    mu_pristine, cov_pristine = _pristine_model()
    mu_image = features.mean(axis=0)
    cov_image = np.cov(features, rowvar=False) if len(features) > 1 else np.zeros_like(cov_pristine)
    d = mu_pristine - mu_image
    return float(np.sqrt(d @ np.linalg.pinv((cov_pristine + cov_image) / 2) @ d))
