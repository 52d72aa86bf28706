"""The fast inference graph (srgan_tf.inference_graph) computes the generator's own function."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from srgan_tf.inference_graph import (
    GraphError,
    fast_generator,
    fast_parts,
    shuffled_output_kernel,
    split_generator,
    with_precision,
)
from srgan_tf.models import PixelShuffle, build_discriminator, build_generator
from srgan_tf.tiling import receptive_radius


def _generator(scale, skip, seed=1):
    """A tiny G whose PReLU slopes (some negative, some > 1) and output layer are far from their initial
    values, so that a wrong alpha tiling or kernel phase shows."""
    keras.utils.set_random_seed(seed)
    g = build_generator(2, 16, scale=scale, bicubic_skip=skip)
    rng = np.random.default_rng(seed)
    for layer in g.layers:
        if isinstance(layer, keras.layers.PReLU):
            layer.set_weights([rng.uniform(-0.5, 1.5, layer.get_weights()[0].shape)])
    kernel, bias = g.get_layer("conv_out").get_weights()
    g.get_layer("conv_out").set_weights([rng.normal(0, 0.05, kernel.shape), rng.normal(0, 0.1, bias.shape)])
    return g


@pytest.mark.parametrize("scale", [2, 4, 8])
@pytest.mark.parametrize("skip", [False, True])
def test_fast_and_split_graphs_equal_the_generator(scale, skip):
    g = _generator(scale, skip)
    x = np.random.default_rng(0).random((2, 13, 11, 3), np.float32)
    want = g(x).numpy()
    fast = fast_generator(g)
    trunk, tail = split_generator(g)
    np.testing.assert_allclose(fast(x).numpy(), want, atol=5e-6)
    np.testing.assert_allclose(tail([trunk(x), tf.constant(x)]).numpy(), want, atol=5e-6)
    whole, split = fast_parts(g)
    np.testing.assert_allclose(whole(x).numpy(), want, atol=5e-6)
    np.testing.assert_allclose(split.tail(split.trunk(x[:1]), x[:1]), (want[:1] + 1) / 2, atol=5e-6)
    assert receptive_radius(fast) == receptive_radius(g)
    # The paper's 9x9 output layer is gone from the fast graph: a 5x5 to 12 channels before a shuffle.
    names = {layer.name for layer in fast.layers}
    assert "conv_out" not in names and fast.get_layer("conv_out_preshuffle").kernel.shape == (5, 5, 64, 12)


def test_the_kernel_rewrite_matches_a_convolution_on_the_shuffled_tensor():
    """Independent of the generator: conv9x9(depth_to_space(z)) == depth_to_space(conv5x5'(z)) on random z."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(1, 7, 6, 4 * 5)).astype(np.float32)
    kernel = rng.normal(size=(9, 9, 5, 3)).astype(np.float32)
    want = tf.nn.conv2d(tf.nn.depth_to_space(z, 2), kernel, 1, "SAME")
    got = tf.nn.depth_to_space(tf.nn.conv2d(z, shuffled_output_kernel(kernel), 1, "SAME"), 2)
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-4)
    assert shuffled_output_kernel(np.zeros((3, 3, 2, 1), np.float32)).shape == (3, 3, 8, 4)


def test_the_saved_keras_file_is_unchanged_by_loading_fast(tmp_path):
    g = _generator(4, True)
    g.save(tmp_path / "g.keras")
    fast_generator(keras.models.load_model(tmp_path / "g.keras"))
    again = keras.models.load_model(tmp_path / "g.keras")
    assert "conv_out" in {layer.name for layer in again.layers}
    assert not any(isinstance(layer, PixelShuffle) and layer.name == "conv_out_shuffle" for layer in again.layers)


def test_other_models_are_refused():
    with pytest.raises(GraphError, match="not a generator of srgan_tf.models"):
        fast_generator(build_discriminator(32))


@pytest.mark.parametrize("skip", [False, True])
@pytest.mark.parametrize("budget", [10**9, 2_000_000, 300_000])  # one window; several; many, at the minimum
def test_two_level_tiling_equals_the_whole_image(budget, skip):
    """Trunk windows with the full margin, tail tiles with the tail's margin: the generator's own output."""
    from srgan_tf.inference_graph import split_for_tiling
    from srgan_tf.tiling import plan_two_level, upscale_two_level

    g = _generator(4, skip)
    split = split_for_tiling(g)
    assert split.trunk_radius + split.tail_radius == receptive_radius(g)[0]
    x = np.random.default_rng(0).random((70, 53, 3), np.float32)
    whole = (g(x[None]).numpy()[0] + 1) / 2
    trunk_tile, tail_tile = plan_two_level(70, 53, split, budget)
    assert (trunk_tile >= 70) == (budget == 10**9)
    np.testing.assert_allclose(upscale_two_level(split, x, budget, lambda t: t), whole, atol=5e-6)
    u8 = upscale_two_level(split, x, budget, lambda t: np.floor(np.clip(t, 0, 1) * 255 + 0.5).astype(np.uint8))
    assert u8.dtype == np.uint8 and np.abs(u8.astype(int) - np.floor(np.clip(whole, 0, 1) * 255 + 0.5)).max() <= 1


@pytest.mark.parametrize("skip", [False, True])
def test_bfloat16_copy_computes_features_in_bfloat16_and_keeps_the_image_float32(skip):
    g = _generator(4, skip)
    half = with_precision(g, "bfloat16")
    policies = {layer.name: layer.dtype_policy.name for layer in half.layers}
    assert policies["res1_conv1"] == policies["up2_conv"] == "mixed_bfloat16"
    if skip:  # the residual may be rounded, the bicubic image and the sum may not
        assert policies["conv_out"] == "mixed_bfloat16" and policies["bicubic_add"] == "float32"
    else:  # the output convolution makes the image
        assert policies["conv_out"] == "float32"
    assert with_precision(g, "float32") is g
    x = np.random.default_rng(0).random((1, 12, 10, 3), np.float32)
    want, got = g(x).numpy(), fast_generator(half)(x).numpy()
    assert got.dtype == np.float32 and got.shape == want.shape
    err = np.abs(got - want).max()
    assert 1e-5 < err < 0.05  # rounded to bfloat16 on the way (~3 significant digits), not wildly off
    assert [w.dtype for w in half.weights] == [w.dtype for w in g.weights]  # float32 weights stay float32
    with pytest.raises(ValueError, match="precision"):
        with_precision(g, "float16")


def test_loader_precision_applies_to_keras_generators_only(tmp_path):
    from srgan_tf.loader import ModelLoadError, load_upscaler

    path = tmp_path / "g.keras"
    _generator(4, True).save(path)
    lr = np.random.default_rng(1).integers(0, 256, (9, 7, 3), np.uint8)
    fp32, bf16 = load_upscaler(str(path)), load_upscaler(str(path), precision="bfloat16")
    assert np.abs(bf16(lr).astype(int) - fp32(lr)).max() <= 8
    assert bf16.split is not None  # still tiled at two levels
    with pytest.raises(ModelLoadError, match="applies to .keras"):
        load_upscaler("bicubic", precision="bfloat16")
    with pytest.raises(ModelLoadError, match="unknown precision"):
        load_upscaler(str(path), precision="int4")
