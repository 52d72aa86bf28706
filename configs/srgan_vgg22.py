"""SRGAN-VGG22 (paper Table 1): the adversarial phase with the VGG22 content loss."""

from srgan_tf.config import base_config


def get_config():
    config = base_config()
    config.data.source = "tfds"
    config.srgan.content_loss = "vgg22"
    return config
