"""SRGAN-MSE (paper Table 1): the adversarial phase with the pixel MSE content loss."""

from srgan_tf.config import base_config


def get_config():
    config = base_config()
    config.data.source = "tfds"
    config.srgan.content_loss = "mse"
    return config
