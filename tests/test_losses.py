"""Losses against the paper's equations (4), (5) and (6)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from srgan_tf import losses


def _images(seed, shape=(2, 32, 32, 3)):
    return tf.constant(np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32))


def test_pixel_mse_is_the_mean_squared_difference():
    hr, sr = _images(0), _images(1)
    expected = np.mean((hr.numpy() - sr.numpy()) ** 2)
    assert float(losses.pixel_mse(hr, sr)) == pytest.approx(expected, rel=1e-6)
    assert float(losses.pixel_mse(hr, hr)) == 0.0


def test_adversarial_losses_from_logits():
    real = tf.constant([[2.0], [-1.0]])
    fake = tf.constant([[0.5], [-3.0]])
    sig = lambda x: 1 / (1 + np.exp(-x.numpy()))  # noqa: E731
    assert float(losses.generator_adversarial_loss(fake)) == pytest.approx(np.mean(-np.log(sig(fake))), rel=1e-5)
    expected_d = np.mean(-np.log(sig(real))) + np.mean(-np.log(1 - sig(fake)))
    assert float(losses.discriminator_loss(real, fake)) == pytest.approx(expected_d, rel=1e-5)
    # Extreme logits stay finite (why the sigmoid lives in the loss).
    assert np.isfinite(float(losses.generator_adversarial_loss(tf.constant([[-200.0]]))))


@pytest.mark.parametrize("name,layer,channels", [("vgg22", "block2_conv2", 128), ("vgg54", "block5_conv4", 512)])
def test_vgg_loss_uses_the_papers_feature_maps(name, layer, channels):
    loss = losses.VGGContentLoss(name, weights="random", feature_scale=1 / 12.75)
    assert loss.features.output_shape[-1] == channels
    assert loss.features.layers[-1].name == layer
    assert not loss.features.trainable
    hr, sr = _images(2), _images(3)
    assert float(loss(hr, hr)) == 0.0
    value = float(loss(hr, sr))
    assert value > 0
    # The feature scale multiplies the features, so the loss scales with its square.
    loss.feature_scale = 2 / 12.75
    assert float(loss(hr, sr)) == pytest.approx(4 * value, rel=1e-4)


def test_vgg_features_are_taken_after_the_relu():
    loss = losses.VGGContentLoss("vgg22", weights="random")
    assert float(tf.reduce_min(loss._phi(_images(4)))) >= 0.0


def test_vgg_loss_gradient_flows_to_sr_only():
    loss = losses.VGGContentLoss("vgg22", weights="random")
    hr, sr = tf.Variable(_images(5)), tf.Variable(_images(6))
    with tf.GradientTape() as tape:
        value = loss(hr, sr)
    g_hr, g_sr = tape.gradient(value, [hr, sr])
    assert g_hr is None or float(tf.reduce_max(tf.abs(g_hr))) == 0.0
    assert float(tf.reduce_max(tf.abs(g_sr))) > 0.0


def test_missing_imagenet_weights_fail_with_instructions(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    monkeypatch.setattr("keras.src.applications.vgg19.file_utils.get_file", offline)
    with pytest.raises(losses.WeightsUnavailableError) as err:
        losses.make_content_loss("vgg54", vgg_weights="imagenet")
    message = str(err.value)
    assert losses.VGG19_NOTOP_FILE in message and str(tmp_path) in message and "\n" not in message
    with pytest.raises(losses.WeightsUnavailableError, match="does not exist"):
        losses.make_content_loss("vgg22", vgg_weights=str(tmp_path / "missing.h5"))


def test_unknown_content_loss_is_refused():
    from srgan_tf.errors import ArgumentError

    with pytest.raises(ArgumentError, match="content_loss must be one of") as refused:
        losses.make_content_loss("vgg33")
    assert refused.value.arg == "content_loss"
