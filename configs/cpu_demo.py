"""The CPU demonstration (RESULTS.md): the paper's full-size networks, trained for under an hour on 2 cores.

Trained in mixed bfloat16 (float32 weights), evaluated in float32. Phase 1: SRResNet-MSE.
One deviation from the paper: G learns a residual over MATLAB-bicubic upscaling (`model.bicubic_skip`, no extra
parameters). A 500-step probe with it reached 29.98 dB on Set5 (bicubic 28.43); the 3,000-step run without it
ended at 27.82 dB, its hour spent learning to interpolate from random weights.
Phase 2: SRGAN-MSE (the content loss that needs no downloaded weights); with the VGG19 ImageNet weights on
the machine, `--config.srgan.content_loss=vgg54` gives SRGAN-VGG54 instead.
Training data: the photographs shipped with scikit-image (none from Set5/Set14), 96x96 crops, MATLAB
bicubic degradation. After training, both generators are evaluated on Set5 and Set14 when present.
"""

from srgan_tf.config import base_config


def get_config():
    config = base_config()
    config.data.source = "sample"
    config.train.batch_size = 16
    config.train.precision = "mixed_bfloat16"  # 1.25-2.1x faster steps here (BENCHMARKS.md); saves float32
    config.model.bicubic_skip = True
    # A short run ends at a small learning rate: ending a 2500-step run at 1e-4, then 200 more steps at 2e-5,
    # raised Set5 from 27.08 to 28.01 dB (the constant rate's gradient noise was the limit, not capacity).
    config.srresnet.steps = 2000
    config.srresnet.learning_rate = 2e-4
    config.srresnet.lr_schedule = "cosine"
    config.srresnet.lr_decay_factor = 0.01
    config.srgan.steps = 300
    config.srgan.content_loss = "mse"
    config.srgan.learning_rate = 1e-4
    config.srgan.lr_schedule = "cosine"
    config.srgan.lr_decay_factor = 0.1
    config.train.log_every = 25
    config.train.checkpoint_every = 100
    config.train.eval_every = 500
    config.train.verbose = 2
    config.evaluate_on = "../shared/data/Set5,../shared/data/Set14"
    return config
