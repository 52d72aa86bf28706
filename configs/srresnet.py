"""SRResNet-MSE (paper Table 1 and 2): the generator alone, pixel MSE, 1e6 steps at 1e-4."""

from srgan_tf.config import base_config


def get_config():
    config = base_config()
    config.phases = "srresnet"
    config.data.source = "tfds"
    return config
