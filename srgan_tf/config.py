"""The experiment configuration: its schema with the paper's values, and its validation.

Experiment files in `configs/` start from `base_config()` and change what differs; every value can be
overridden on the command line (`--config.srresnet.steps=100`). The config is locked, so a misspelt key is an
error rather than a silently ignored setting.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import ml_collections

from srgan_tf.distribute import STRATEGIES
from srgan_tf.errors import ArgumentError

PHASES = ("srresnet", "srgan")
LR_SCHEDULES = ("step", "cosine")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the key."""


@contextmanager
def section(key: str) -> Iterator[None]:
    """Inside, an errors.ArgumentError from a builder given `config.<key>` (build_generator(**config.model))
    becomes a ConfigError naming `config.<key>.<argument>`."""
    try:
        yield
    except ArgumentError as e:
        raise ConfigError(f"config.{key}.{e.arg}: {e.reason}") from None


def _phase(steps: int, content_loss: str, adversarial_weight: float, learning_rate: float = 1e-4,
           lr_decay_steps: int = 0) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({
        "steps": steps,
        "content_loss": content_loss,  # "mse" (eq. 4), "vgg22" or "vgg54" (eq. 5)
        "adversarial_weight": adversarial_weight,  # 1e-3 in eq. 3; 0 trains G alone (SRResNet)
        "learning_rate": learning_rate,
        # step: the paper's, learning_rate times lr_decay_factor from step lr_decay_steps on (0: never).
        # cosine: a half cosine from learning_rate down to learning_rate * lr_decay_factor at the phase's last step.
        "lr_schedule": "step",
        "lr_decay_steps": lr_decay_steps,
        "lr_decay_factor": 0.1,
    })


def base_config() -> ml_collections.ConfigDict:
    """The paper's SRGAN-VGG54 setup (Sec. 3.2): SRResNet-MSE for 1e6 steps, then SRGAN for 2e5 steps."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.phases = "srresnet,srgan"  # comma-separated, run in this order
    # Benchmark folders (comma-separated) to evaluate each phase's generator on after training; missing
    # folders are skipped with a warning. Reports go to <workdir>/eval/<phase>/<set>/.
    c.evaluate_on = ""

    # tf.distribute (srgan_tf/distribute.py): none | mirrored (this machine's GPUs, or `devices`) | multi_worker
    # (one process per machine, TF_CONFIG) | tpu (`tpu`: the TPU's name or address, "" = this TPU VM's).
    # train.batch_size is then the global batch, split evenly over the replicas.
    c.distribute = "none"
    c.devices = ""
    c.tpu = ""

    c.model = ml_collections.ConfigDict({"num_blocks": 16, "filters": 64, "scale": 4, "bn_momentum": 0.9,
                                      "batch_norm": True,  # False: G without BN (EDSR/ESRGAN), a deviation
                                      # True: G learns a residual over MATLAB-bicubic upscaling, a deviation
                                      "bicubic_skip": False})

    c.data = ml_collections.ConfigDict({
        "source": "sample",  # sample (photos shipped with scikit-image) | folder | tfds | paired
        "path": "",  # folder: HR images (recursive); paired: a folder holding HR/ and LR/ (or lr_dir below)
        "lr_dir": "",  # paired: the LR folder, if not path/LR
        "tfds_name": "div2k/bicubic_x4",
        "tfds_split": "train",
        "tfds_data_dir": "",
        "tfds_download": True,
        "crop": 96,  # HR crop side; the LR crop is crop / scale
        "degradation": "matlab",  # matlab (imresize bicubic, antialiased) | pil | tf
        "augment": True,  # random flips and 90-degree rotations
        "cache": "memory",  # memory | none | a file path prefix for tf.data's file cache
        "shuffle_buffer": 64,  # decoded images in the shuffle buffer
        "val_dir": "",  # a benchmark folder (HR/, optional LR_bicubic_x4/); "" = held-out sample photos
        "val_max_images": 5,
    })

    c.loss = ml_collections.ConfigDict({
        "vgg_weights": "imagenet",  # imagenet | a path to the no-top .h5 | random (tests only)
        "vgg_feature_scale": 1 / 12.75,  # paper Sec. 3.2
    })

    c.optimizer = ml_collections.ConfigDict({"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-8})

    c.srresnet = _phase(steps=1_000_000, content_loss="mse", adversarial_weight=0.0)
    c.srgan = _phase(steps=200_000, content_loss="vgg54", adversarial_weight=1e-3, lr_decay_steps=100_000)

    c.train = ml_collections.ConfigDict({
        "batch_size": 16,
        "log_every": 100,  # steps per Keras "epoch": one progress line and one TensorBoard point each
        "checkpoint_every": 1000,
        "keep_checkpoints": 3,
        # Updates with a non-finite loss or gradient are not applied; after max_bad_steps of them in a row the
        # newest checkpoint is restored (at most max_rollbacks times, then the run stops with an error).
        "max_bad_steps": 10,
        "max_rollbacks": 3,
        # Bitwise-repeatable runs (tf.config.experimental.enable_op_determinism): a resumed run then ends with
        # the weights of an uninterrupted one. Slower, and process-wide.
        "deterministic": False,
        "eval_every": 10_000,  # validation PSNR/SSIM; 0: only at the end of each phase
        "verbose": 1,  # 0 silent, 1 a progress bar on a terminal (plain lines when redirected), 2 plain lines
        # float32 | mixed_bfloat16 (bfloat16 compute, float32 weights; ~3x faster on CPUs with AMX/AVX512-BF16)
        # | mixed_float16 (GPUs; each optimizer then scales its loss dynamically, keras LossScaleOptimizer).
        # Saved generators are always float32.
        "precision": "float32",
        # > 0: keep an exponential moving average of G's weights (0.999 in BasicSR and Real-ESRGAN), updated
        # after each applied G update; it is what gets validated, evaluated and saved as generator*.keras
        # (the raw weights go to generator_<phase>_raw.keras). A deviation from the paper, which has none.
        "ema_decay": 0.0,
    })
    return c


def phases_of(config: ml_collections.ConfigDict) -> list[str]:
    return [p.strip() for p in config.phases.split(",") if p.strip()]


def validate(config: ml_collections.ConfigDict) -> list[str]:
    """Returns the phases to run, in order (config.phases parsed, the one place it is); raises ConfigError
    naming the first key whose value cannot work.

    It checks what spans fields, and the values that no builder reads before the first step: the phases'
    (their optimizers are built when the phase starts, and a bad phase 2 must not fail after phase 1) and
    train's. A value that one builder takes is checked by that builder (see `section`)."""
    def need(ok: bool, key: str, msg: str) -> None:
        if not ok:
            raise ConfigError(f"config.{key}: {msg}")

    phases = phases_of(config)
    need(bool(phases) and all(p in PHASES for p in phases), "phases", f"must list phases from {PHASES}, got "
         f"{config.phases!r}")
    # model.* is checked by models.build_generator, data.source, degradation and shuffle_buffer by
    # data.training_source, data.path's folder by the data builders, the content losses by
    # losses.make_content_loss: train builds all of them before the first step (see `section`).
    need(config.distribute in STRATEGIES, "distribute", f"must be one of {STRATEGIES}, got {config.distribute!r}")

    d = config.data
    need(d.crop > 0 and d.crop % max(config.model.scale, 1) == 0, "data.crop",
         f"must be a positive multiple of model.scale ({config.model.scale}), got {d.crop}")
    if "srgan" in phases:
        need(d.crop % 16 == 0, "data.crop", f"must be a multiple of 16 for the discriminator, got {d.crop}")
    if d.source in ("folder", "paired"):
        need(bool(d.path), "data.path", f"is required for source {d.source!r}")

    for name in phases:
        p = config[name]
        need(p.steps >= 0, f"{name}.steps", f"must be >= 0, got {p.steps}")
        need(p.adversarial_weight >= 0, f"{name}.adversarial_weight", f"must be >= 0, got {p.adversarial_weight}")
        need(p.learning_rate > 0, f"{name}.learning_rate", f"must be > 0, got {p.learning_rate}")
        need(p.lr_decay_steps >= 0, f"{name}.lr_decay_steps", f"must be >= 0, got {p.lr_decay_steps}")
        need(p.lr_schedule in LR_SCHEDULES, f"{name}.lr_schedule",
             f"must be one of {LR_SCHEDULES}, got {p.lr_schedule!r}")
        need(0 <= p.lr_decay_factor <= 1, f"{name}.lr_decay_factor", f"must be in [0, 1], got {p.lr_decay_factor}")
    need(config.srresnet.adversarial_weight == 0 or "srresnet" not in phases, "srresnet.adversarial_weight",
         "must be 0 (SRResNet is trained without D)")

    t = config.train
    need(t.batch_size >= 1, "train.batch_size", f"must be >= 1, got {t.batch_size}")
    for key in ("log_every", "checkpoint_every", "keep_checkpoints", "max_bad_steps"):
        need(t[key] >= 1, f"train.{key}", f"must be >= 1, got {t[key]}")
    for key in ("eval_every", "max_rollbacks"):
        need(t[key] >= 0, f"train.{key}", f"must be >= 0, got {t[key]}")
    need(0 <= t.ema_decay < 1, "train.ema_decay", f"must be in [0, 1), got {t.ema_decay}")
    need(t.precision in PRECISIONS, "train.precision", f"must be one of {PRECISIONS}, got {t.precision!r}")
    return phases
