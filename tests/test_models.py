"""The networks against the paper's Figure 4: layer sequence, parameter counts, dynamic sizes, save/load."""

import keras
import numpy as np
import pytest

from srgan_tf.imresize import imresize
from srgan_tf.models import BicubicUpsample, PixelShuffle, build_discriminator, build_generator, float32_copy


def _conv_summary(model):
    """(kind, filters or units, kernel, strides) of every weighted layer, in order."""
    rows = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            rows.append(("conv", layer.filters, layer.kernel_size[0], layer.strides[0]))
        elif isinstance(layer, keras.layers.Dense):
            rows.append(("dense", layer.units))
        elif isinstance(layer, keras.layers.BatchNormalization):
            rows.append(("bn",))
        elif isinstance(layer, keras.layers.PReLU):
            rows.append(("prelu", tuple(layer.shared_axes)))
        elif isinstance(layer, PixelShuffle):
            rows.append(("shuffle", layer.factor))
    return rows


def test_generator_parameter_count_matches_the_paper_architecture():
    g = build_generator()
    assert g.count_params() == 1_554_883
    # The same count by hand: conv9x9(3->64) + PReLU, 16 x [conv, BN, PReLU, conv, BN], conv + BN,
    # 2 x [conv 64->256, shuffle, PReLU(64)], conv9x9(64->3). BN has 4 x 64 values.
    block = 2 * (3 * 3 * 64 * 64 + 64) + 2 * 4 * 64 + 64
    expected = (9 * 9 * 3 * 64 + 64) + 64 + 16 * block + (3 * 3 * 64 * 64 + 64 + 4 * 64) \
        + 2 * (3 * 3 * 64 * 256 + 256 + 64) + (9 * 9 * 64 * 3 + 3)
    assert expected == 1_554_883


def test_generator_layer_sequence():
    rows = _conv_summary(build_generator())
    prelu = ("prelu", (1, 2))  # one alpha per channel, shared over space
    block = [("conv", 64, 3, 1), ("bn",), prelu, ("conv", 64, 3, 1), ("bn",)]
    upsample = [("conv", 256, 3, 1), ("shuffle", 2), prelu]
    assert rows == ([("conv", 64, 9, 1), prelu] + block * 16 + [("conv", 64, 3, 1), ("bn",)]
                    + upsample * 2 + [("conv", 3, 9, 1)])
    g = build_generator()
    assert g.get_layer("conv_out").activation.__name__ == "tanh"
    assert len([lyr for lyr in g.layers if isinstance(lyr, keras.layers.Add)]) == 17  # 16 short + 1 long skip


def test_discriminator_layer_sequence_and_parameter_count():
    d = build_discriminator()
    rows = _conv_summary(d)
    convs = [r for r in rows if r[0] == "conv"]
    assert convs == [("conv", w, 3, s) for w, s in
                     zip([64, 64, 128, 128, 256, 256, 512, 512], [1, 2, 1, 2, 1, 2, 1, 2], strict=True)]
    assert rows.count(("bn",)) == 7 and rows[1] != ("bn",)  # BN after every conv but the first
    assert [r for r in rows if r[0] == "dense"] == [("dense", 1024), ("dense", 1)]
    leaky = [lyr for lyr in d.layers if isinstance(lyr, keras.layers.LeakyReLU)]
    assert len(leaky) == 9 and all(abs(lyr.negative_slope - 0.2) < 1e-9 for lyr in leaky)
    conv_params = sum(3 * 3 * i * o + o for i, o in zip([3, 64, 64, 128, 128, 256, 256, 512],
                                                          [64, 64, 128, 128, 256, 256, 512, 512], strict=True))
    bn_params = 4 * (64 + 128 + 128 + 256 + 256 + 512 + 512)
    dense_params = 6 * 6 * 512 * 1024 + 1024 + 1024 + 1
    assert d.count_params() == conv_params + bn_params + dense_params
    assert d.output_shape == (None, 1)
    assert d.get_layer("logits").activation.__name__ == "linear"  # logits; the sigmoid is in the loss


@pytest.mark.parametrize("scale", [2, 4, 8])
@pytest.mark.parametrize("size", [(7, 5), (16, 16), (13, 22)])
def test_generator_dynamic_and_odd_sizes(scale, size):
    g = build_generator(num_blocks=2, filters=16, scale=scale)
    x = np.random.default_rng(0).random((2, *size, 3), dtype=np.float32)
    y = np.asarray(g(x))
    assert y.shape == (2, size[0] * scale, size[1] * scale, 3)
    assert y.min() >= -1 and y.max() <= 1


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="scale"):
        build_generator(scale=3)
    with pytest.raises(ValueError, match="multiple of 16"):
        build_discriminator(hr_size=100)


def test_pixel_shuffle_moves_channels_to_space():
    x = np.arange(1 * 1 * 1 * 12, dtype=np.float32).reshape(1, 1, 1, 12)
    y = np.asarray(PixelShuffle(2)(x))
    assert y.shape == (1, 2, 2, 3)
    assert sorted(y.ravel().tolist()) == list(range(12))
    assert PixelShuffle.from_config(PixelShuffle(4).get_config()).factor == 4


def test_keras_round_trip_in_safe_mode(tmp_path):
    g = build_generator(num_blocks=2, filters=16)
    x = np.random.default_rng(1).random((1, 11, 9, 3), dtype=np.float32)
    path = tmp_path / "g.keras"
    g.save(path)
    loaded = keras.models.load_model(path)  # safe_mode=True is the default: no Lambda, no pickles
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(g(x)), atol=1e-6)
    assert isinstance(loaded.get_layer("up1_shuffle"), PixelShuffle)

    d = build_discriminator(hr_size=32)
    d.save(tmp_path / "d.keras")
    z = np.random.default_rng(2).random((2, 32, 32, 3), dtype=np.float32)
    np.testing.assert_allclose(np.asarray(keras.models.load_model(tmp_path / "d.keras")(z)), np.asarray(d(z)),
                               atol=1e-5)


@pytest.mark.parametrize("factor", [2, 4, 8])
@pytest.mark.parametrize("shape", [(2, 13, 17, 3), (1, 1, 2, 1), (1, 3, 3, 4)])
def test_bicubic_upsample_is_matlab_imresize(factor, shape):
    x = np.random.default_rng(factor).random(shape, dtype=np.float32)
    np.testing.assert_allclose(np.asarray(BicubicUpsample(factor)(x)), np.asarray(imresize(x, factor)), atol=2e-6)


def test_untrained_bicubic_skip_generator_is_bicubic_interpolation_and_round_trips(tmp_path):
    g = build_generator(num_blocks=2, filters=16, bicubic_skip=True)
    assert g.count_params() == build_generator(num_blocks=2, filters=16).count_params()
    x = np.random.default_rng(3).random((2, 9, 14, 3), dtype=np.float32)
    np.testing.assert_allclose(np.asarray(g(x)), 2 * np.asarray(imresize(x, 4)) - 1, atol=5e-6)
    g.get_layer("conv_out").bias.assign([0.1, -0.2, 0.3])  # trained weights: the residual is added
    g.save(tmp_path / "g.keras")
    loaded = keras.models.load_model(tmp_path / "g.keras")
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(g(x)), atol=1e-6)
    assert isinstance(loaded.get_layer("bicubic"), BicubicUpsample)
    np.testing.assert_allclose(np.asarray(loaded(x)).mean(axis=(0, 1, 2)),
                               (2 * np.asarray(imresize(x, 4)) - 1).mean(axis=(0, 1, 2)) + [0.1, -0.2, 0.3],
                               atol=1e-5)


@pytest.mark.parametrize("bicubic_skip", [False, True])
def test_float32_copy_of_a_mixed_precision_synchronized_model_is_the_plain_float32_build(bicubic_skip):
    """What training saves: the copy's config is the float32 builder's, with the trained model's weights."""
    try:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        trained = build_generator(2, 16, bicubic_skip=bicubic_skip, synchronized_bn=True)
        critic = build_discriminator(32, synchronized_bn=True)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    plain_g = build_generator(2, 16, bicubic_skip=bicubic_skip)
    for model, plain in ((trained, plain_g), (critic, build_discriminator(32))):
        for w in model.weights:
            w.assign(np.random.default_rng(0).normal(size=w.shape).astype(w.dtype) * 0.1)
        copy = float32_copy(model)
        assert copy.get_config() == plain.get_config()
        assert {layer.dtype_policy.name for layer in copy.layers} == {"float32"}
        for a, b in zip(copy.weights, model.weights, strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
