"""SRGAN-VGG54, the paper's headline model (Ledig et al. 2017, Sec. 3.2 and Table 2).

Phase 1: SRResNet-MSE, 1e6 steps at 1e-4. Phase 2: SRGAN with the VGG54 content loss and adversarial
weight 1e-3, 1e5 steps at 1e-4 then 1e5 at 1e-5. Batch 16 of 96x96 HR crops, Adam(beta_1=0.9).
The paper trained on 350k ImageNet images; this config reads DIV2K from TFDS (see README, "Deviations").
"""

from srgan_tf.config import base_config


def get_config():
    config = base_config()
    config.data.source = "tfds"
    return config
