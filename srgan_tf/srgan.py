"""The SRGAN training model: a keras.Model holding G and D whose train_step is the paper's Algorithm (k = 1)."""

from __future__ import annotations

import keras
import tensorflow as tf

from srgan_tf import losses


class SRGAN(keras.Model):
    """Trains generator G (and, when `adversarial_weight > 0`, discriminator D) with `fit()`.

    Data: batches `(lr, hr)`, lr float32 [N, h, w, 3] in [0, 1], hr float32 [N, s*h, s*w, 3] in [-1, 1].
    With `adversarial_weight == 0` this is the SRResNet phase (content loss only, D untouched). Otherwise each
    batch does one D update, then one G update against the updated D (k = 1 in Goodfellow et al.), with the
    generator loss l_X + adversarial_weight * l_Gen (eq. 3). Calling the model runs G.
    """

    def __init__(self, generator: keras.Model, discriminator: keras.Model | None, content_loss,
                 adversarial_weight: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if adversarial_weight > 0 and discriminator is None:
            raise ValueError("an adversarial phase needs a discriminator")
        self.generator = generator
        self.discriminator = discriminator
        self.content_loss = content_loss
        self.adversarial = adversarial_weight > 0
        self.adversarial_weight = float(adversarial_weight)
        names = ["g_loss", "content_loss", "psnr"]
        if self.adversarial:
            names += ["adv_loss", "d_loss", "d_real", "d_fake"]
        self.trackers = {n: keras.metrics.Mean(name=n) for n in names}

    def compile(self, g_optimizer: keras.optimizers.Optimizer,
                d_optimizer: keras.optimizers.Optimizer | None = None, **kwargs):
        super().compile(**kwargs)
        if self.adversarial and d_optimizer is None:
            raise ValueError("an adversarial phase needs a discriminator optimizer")
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, lr, training=False):
        return self.generator(lr, training=training)

    def train_step(self, data):
        lr, hr, _ = keras.utils.unpack_x_y_sample_weight(data)
        stats = {}
        with tf.GradientTape() as g_tape:
            sr = self.generator(lr, training=True)
            if self.adversarial:
                with g_tape.stop_recording(), tf.GradientTape() as d_tape:
                    real_logits = self.discriminator(hr, training=True)
                    fake_logits = self.discriminator(tf.stop_gradient(sr), training=True)
                    d_loss = losses.discriminator_loss(real_logits, fake_logits)
                d_vars = self.discriminator.trainable_variables
                self.d_optimizer.apply_gradients(zip(d_tape.gradient(d_loss, d_vars), d_vars, strict=True))
                stats |= {"d_loss": d_loss, "d_real": tf.reduce_mean(tf.sigmoid(real_logits)),
                          "d_fake": tf.reduce_mean(tf.sigmoid(fake_logits))}
            content = self.content_loss(hr, sr)
            g_loss = content
            if self.adversarial:
                adv = losses.generator_adversarial_loss(self.discriminator(sr, training=True))
                g_loss = content + self.adversarial_weight * adv
                stats["adv_loss"] = adv
        g_vars = self.generator.trainable_variables
        self.g_optimizer.apply_gradients(zip(g_tape.gradient(g_loss, g_vars), g_vars, strict=True))

        # RGB PSNR of the training batch on the [-1, 1] range: a cheap progress signal, not the benchmark metric.
        stats |= {"g_loss": g_loss, "content_loss": content,
                  "psnr": tf.reduce_mean(tf.image.psnr(hr, tf.clip_by_value(sr, -1.0, 1.0), max_val=2.0))}
        for name, value in stats.items():
            self.trackers[name].update_state(value)
        return {name: t.result() for name, t in self.trackers.items()}
