"""SRResNet-VGG22 (paper Table 1): the generator alone, trained with the VGG22 content loss."""

from srgan_tf.config import base_config


def get_config():
    config = base_config()
    config.phases = "srresnet"
    config.data.source = "tfds"
    config.srresnet.content_loss = "vgg22"
    return config
