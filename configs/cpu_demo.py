"""The CPU demonstration (RESULTS.md, models/): SRResNet, then SRGAN, the paper's full-size networks, trained on
the classic 291-image set in under two hours on 2 cores.

    python -m srgan_tf.train --config=configs/cpu_demo.py --workdir=runs/cpu_demo

Data: `../shared/data/train291` (T91 + the 200 BSDS300 training images; none of them in Set5, Set14 or BSD100),
96x96 HR crops, MATLAB bicubic degradation; validated on Set5 (no model selection), evaluated on Set5 and
Set14 after training. Trained in mixed bfloat16 (float32 weights), evaluated in float32.

Deviations from the paper, each for the short budget:
- `model.bicubic_skip`: G learns a residual over MATLAB-bicubic upscaling (no extra parameters); without it
  an hour of CPU is spent learning to interpolate.
- cosine learning-rate decay in phase 1 (a short run must end at a small rate), and 1,200 SRGAN steps with
  the paper's step decay (1e-4, then 1e-5) at step 900 instead of 1e5 + 1e5.
- an exponential moving average of G's weights (`train.ema_decay`), 0.995 rather than BasicSR's 0.999: the
  average's time constant (200 steps) must be short against a 1,200-step adversarial phase, or a quarter of
  the SRGAN average would still be the SRResNet it started from (0.999^1200 = 0.30).
Phase 2 is SRGAN-MSE, the content loss that needs no downloaded weights; on a machine with the VGG19 ImageNet
weights, `--config.srgan.content_loss=vgg54` gives the paper's SRGAN-VGG54.
"""

from srgan_tf.config import base_config


def get_config():
    config = base_config()
    config.data.source = "folder"
    config.data.path = "../shared/data/train291"
    config.data.shuffle_buffer = 291  # the whole set: every batch mixes T91 and BSD200
    config.data.val_dir = "../shared/data/Set5"
    config.train.batch_size = 16
    config.train.precision = "mixed_bfloat16"  # 1.25-2.1x faster steps here (BENCHMARKS.md); saves float32
    config.train.ema_decay = 0.995
    config.model.bicubic_skip = True
    config.srresnet.steps = 3300
    config.srresnet.learning_rate = 2e-4
    config.srresnet.lr_schedule = "cosine"
    config.srresnet.lr_decay_factor = 0.01
    config.srgan.steps = 1200
    config.srgan.content_loss = "mse"
    config.srgan.learning_rate = 1e-4
    config.srgan.lr_decay_steps = 900
    config.srgan.lr_decay_factor = 0.1
    config.train.log_every = 50
    config.train.checkpoint_every = 100
    config.train.eval_every = 500
    config.train.verbose = 2
    config.evaluate_on = "../shared/data/Set5,../shared/data/Set14"
    return config
