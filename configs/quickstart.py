"""The default run: both phases, briefly, on the photographs shipped with scikit-image.

A complete SRResNet -> SRGAN run that needs no download (MSE content loss) and finishes in a few minutes on
a 2-core CPU. It proves the machinery end to end; it is far too short to beat bicubic interpolation.
"""

from srgan_tf.config import base_config


def get_config():
    config = base_config()
    config.data.source = "sample"
    config.model.num_blocks = 8
    config.model.filters = 32
    config.train.batch_size = 8
    config.srresnet.steps = 200
    config.srresnet.learning_rate = 2e-4
    config.srgan.steps = 60
    config.srgan.content_loss = "mse"
    config.srgan.lr_decay_steps = 30
    config.train.log_every = 20
    config.train.checkpoint_every = 20
    config.train.eval_every = 100
    return config
