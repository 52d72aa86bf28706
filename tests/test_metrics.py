import math
from importlib import resources

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from srgan_tf import metrics


def _pair(h=40, w=36, seed=0):
    rng = np.random.default_rng(seed)
    hr = rng.integers(0, 256, size=(h, w, 3)).astype(np.uint8)
    noise = rng.integers(-20, 21, size=hr.shape)
    sr = np.clip(hr.astype(np.int32) + noise, 0, 255).astype(np.uint8)
    return sr, hr


def test_luma_is_bt601_studio_range():
    colours = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]]], np.uint8)
    y = metrics.luma(colours).numpy()[0, 0, :, 0]
    np.testing.assert_allclose(y, [16.0, 235.0, 16 + 65.481, 16 + 128.553, 16 + 24.966], atol=1e-9)
    # float input in [0, 1] means the same colours
    np.testing.assert_allclose(metrics.luma(colours / 255.0).numpy()[0, 0, :, 0], y, atol=1e-9)


def test_single_channel_is_its_own_y_and_gray_of_equal_channels_is_the_value():
    g = np.arange(0, 250, 2, dtype=np.uint8).reshape(5, 25, 1)
    np.testing.assert_array_equal(metrics.luma(g).numpy()[0], g.astype(np.float64))
    rgb = np.repeat(g, 3, axis=-1)
    np.testing.assert_allclose(metrics.gray(rgb).numpy()[0], g, atol=1e-9)


def test_psnr_matches_the_formula_on_y():
    sr, hr = _pair()
    y_sr = 16 + sr[4:-4, 4:-4].astype(np.float64) @ np.array([65.481, 128.553, 24.966]) / 255
    y_hr = 16 + hr[4:-4, 4:-4].astype(np.float64) @ np.array([65.481, 128.553, 24.966]) / 255
    want = 10 * math.log10(255**2 / np.mean((y_sr - y_hr) ** 2))
    assert metrics.psnr(sr, hr, shave=4).numpy()[0] == pytest.approx(want, abs=1e-9)


def test_shave_ignores_the_border():
    sr, hr = _pair()
    sr[:3] = 0  # damage only the top 3 rows
    sr[3:] = hr[3:]
    assert math.isinf(metrics.psnr(sr, hr, shave=4).numpy()[0])
    assert math.isfinite(metrics.psnr(sr, hr, shave=0).numpy()[0])
    assert metrics.ssim(sr, hr, shave=4).numpy()[0] == pytest.approx(1.0)


def test_ssim_matches_tf_image_ssim_on_y():
    sr, hr = _pair(48, 52)
    ref = tf.image.ssim(tf.cast(metrics.luma(sr), tf.float32)[:, 4:-4, 4:-4],
                        tf.cast(metrics.luma(hr), tf.float32)[:, 4:-4, 4:-4],
                        max_val=255.0, filter_size=11, filter_sigma=1.5, k1=0.01, k2=0.03)
    got = metrics.ssim(sr, hr, shave=4).numpy()[0]
    assert 0.0 < got < 1.0
    assert got == pytest.approx(float(ref[0]), abs=1e-4)


def test_batches_give_one_value_per_image():
    pairs = [_pair(seed=s) for s in range(3)]
    sr = np.stack([p[0] for p in pairs])
    hr = np.stack([p[1] for p in pairs])
    psnr, ssim = metrics.psnr(sr, hr).numpy(), metrics.ssim(sr, hr).numpy()
    assert psnr.shape == ssim.shape == (3,)
    for i, (s, h) in enumerate(pairs):
        p1, s1 = metrics.psnr_ssim(s, h)
        assert psnr[i] == pytest.approx(p1) and ssim[i] == pytest.approx(s1)
    assert len(set(np.round(psnr, 6))) == 3


def test_uint8_and_float_inputs_agree_and_work_in_tf_function():
    sr, hr = _pair()

    @tf.function
    def both(a, b):
        return metrics.psnr(a, b), metrics.ssim(a, b)

    p8, s8 = metrics.psnr_ssim(sr, hr)
    pf, sf = both(tf.constant(sr[None] / 255.0, tf.float32), tf.constant(hr[None] / 255.0, tf.float32))
    assert float(pf[0]) == pytest.approx(p8, abs=1e-4)
    assert float(sf[0]) == pytest.approx(s8, abs=1e-5)


def test_identical_images():
    _, hr = _pair()
    p, s = metrics.psnr_ssim(hr, hr)
    assert math.isinf(p) and s == pytest.approx(1.0)


def test_bad_shapes():
    sr, hr = _pair()
    with pytest.raises(ValueError, match="shape"):
        metrics.psnr(sr[..., :2], hr[..., :2])
    with pytest.raises(ValueError, match="same shape"):
        metrics.psnr(sr[:-4], hr)


# NIQE ---------------------------------------------------------------------------------------------------------

def _baboon(shared_data):
    return np.asarray(Image.open(shared_data / "Set14" / "HR" / "img_001.png").convert("RGB"))


def test_niqe_matches_matlab_for_baboon(shared_data):
    """MATLAB R2021a's niqe gives 5.7296 (5.72957338) for Set14's baboon cropped to its first 492 columns.
    The feature definition and the half-size pass's mirrored borders are what this pins: the GGD sigma in
    place of the AGGD spread gives 27.4, edge-clamped taps in the half-size resize give 5.7191."""
    assert metrics.niqe(_baboon(shared_data)[:, :492]) == pytest.approx(5.7296, abs=0.001)


def test_niqe_uses_whole_blocks_and_shaves_before_cropping(shared_data):
    im = _baboon(shared_data)
    assert metrics.niqe(im[:, :492]) == metrics.niqe(im)  # 500 and 492 columns both give 5 blocks
    assert metrics.niqe(im, shave=4) != metrics.niqe(im)


def test_niqe_ranks_blur_and_noise_as_less_natural(shared_data):
    im = _baboon(shared_data)
    pil = Image.fromarray(im)
    blurred = np.asarray(pil.resize((125, 120), Image.Resampling.BICUBIC).resize((500, 480),
                                                                                   Image.Resampling.BICUBIC))
    noisy = np.clip(im + np.random.default_rng(0).normal(0, 25, im.shape), 0, 255).astype(np.uint8)
    base = metrics.niqe(im)
    assert metrics.niqe(blurred) > base + 1 and metrics.niqe(noisy) > base + 1


def test_niqe_of_gray_inputs_and_bad_inputs():
    rng = np.random.default_rng(0)
    g = np.asarray(Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).resize((200, 200)))
    assert metrics.niqe(g) == metrics.niqe(g[..., None])
    rgb = np.repeat(g[..., None], 3, axis=-1)
    assert metrics.niqe(rgb, as_gray=True) == pytest.approx(metrics.niqe(g))
    with pytest.raises(ValueError, match="96x96"):
        metrics.niqe(g[:95, :300])
    with pytest.raises(ValueError, match="flat"):
        metrics.niqe(np.full((100, 100), 7, np.uint8))
    with pytest.raises(TypeError, match="uint8"):
        metrics.niqe(g.astype(np.float32))


def test_the_pristine_model_ships_inside_the_package_with_its_notice():
    mu, cov = metrics._pristine_model()
    assert mu.shape == (36,) and cov.shape == (36, 36)
    np.testing.assert_allclose(cov, cov.T)
    folder = resources.files("srgan_tf") / "niqe_model"
    assert "University of Texas at Austin" in (folder / "NOTICE.txt").read_text()
