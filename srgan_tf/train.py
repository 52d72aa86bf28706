"""Trains SRResNet and SRGAN: `python -m srgan_tf.train --config=srgan --workdir=runs/srgan`.

Both flags are optional (defaults: the shipped config quickstart, runs/<config name>). `--config` is the name
of a shipped config (srgan_tf.configs, the repository's configs/) or a config file's path. Config values are overridden
with `--config.KEY=VALUE`. Re-running the same command on the same workdir resumes where it stopped; a
finished phase is not redone. The workdir receives:
  checkpoints/<phase>/   G, D, both optimizers (their iteration count is the phase's step)
  tensorboard/           losses, metrics, learning rate, validation PSNR/SSIM, sample images
  samples/               side-by-side PNGs (LR nearest | bicubic | SR | HR) at the end of each phase
  generator_<phase>.keras, generator.keras (the last phase's), config.json
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import sys
import time
from pathlib import Path
from typing import NoReturn

import keras
import ml_collections
import tensorflow as tf
from absl import flags
from ml_collections import config_flags

from srgan_tf import configs, data, distribute
from srgan_tf.callbacks import phase_callbacks
from srgan_tf.cli import EXIT_BAD_FLAGS, EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK
from srgan_tf.config import ConfigError, section, validate
from srgan_tf.ema import WeightAverage
from srgan_tf.errors import first_line
from srgan_tf.evaluate import evaluate
from srgan_tf.images import atomic_write
from srgan_tf.loader import load_upscaler
from srgan_tf.lock import WorkdirBusyError, workdir_lock
from srgan_tf.losses import WeightsUnavailableError, make_content_loss
from srgan_tf.models import build_discriminator, build_generator, float32_copy
from srgan_tf.srgan import SRGAN, counter

log = logging.getLogger("srgan_tf")
DEFAULT_CONFIG = configs.config_path("quickstart")  # the installed file, wherever the package is


class Interrupted(Exception):  # noqa: N818 (a signal, not an error)
    """Training stopped on SIGTERM/SIGINT after writing a checkpoint."""


class DivergenceError(RuntimeError):
    """Training kept producing non-finite updates after the allowed rollbacks."""


class CheckpointError(RuntimeError):
    """A workdir's checkpoints exist but none of them can be restored into this configuration."""


USER_ERRORS = (ConfigError, data.DataError, WeightsUnavailableError, WorkdirBusyError, CheckpointError,
               distribute.DistributeError, OSError)


def _learning_rate(p: ml_collections.ConfigDict):
    if p.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(p.learning_rate, max(p.steps, 1), alpha=p.lr_decay_factor)
    if not p.lr_decay_steps:
        return p.learning_rate
    # The schedule sees the update count before the update: lr_decay_steps updates at the full rate.
    return keras.optimizers.schedules.PiecewiseConstantDecay(
        [p.lr_decay_steps - 1], [p.learning_rate, p.learning_rate * p.lr_decay_factor])


def _optimizer(p: ml_collections.ConfigDict, config: ml_collections.ConfigDict) -> keras.optimizers.Optimizer:
    adam = keras.optimizers.Adam(_learning_rate(p), **dict(config.optimizer))
    # float16 gradients underflow without loss scaling; bfloat16 has float32's exponent range and needs none.
    return keras.optimizers.LossScaleOptimizer(adam) if config.train.precision == "mixed_float16" else adam


def _save_generators(generator: keras.Model, workdir: Path, name: str, write: bool = True,
                     ema: WeightAverage | None = None) -> None:
    """Writes a plain float32 copy of `generator` (whatever the training precision and strategy) to
    workdir/generator_<name>.keras, atomically; with `ema`, that file holds the average's trainable weights and
    generator_<name>_raw.keras the trained ones. Every worker of a multi_worker run makes the copy (its
    variables are created collectively), only the one with `write` saves it."""
    copy = float32_copy(generator)
    if ema is not None:
        if write:
            atomic_write(workdir / f"generator_{name}_raw.keras", lambda tmp: copy.save(tmp))
        ema.copy_to(copy.trainable_variables)
    if write:
        atomic_write(workdir / f"generator_{name}.keras", lambda tmp: copy.save(tmp))


def train_phase(name: str, config: ml_collections.ConfigDict, workdir: Path, generator: keras.Model,
                content_loss, make_dataset, val_images, writer, init_from: str | None, chief: bool = True,
                synchronized_bn: bool = False) -> dict:
    """Runs (or resumes, or skips if finished) one phase, inside the strategy's scope; returns its summary.

    `content_loss` is the phase's (losses.make_content_loss). `make_dataset(position)` gives the training
    batches from batch number `position` on. Only the `chief` validates and writes generators; every process
    checkpoints into its own `workdir`. D and its optimizer exist (and are checkpointed) only in an adversarial
    phase: an SRResNet checkpoint holds G, G's Adam state, the data position and G's weight average."""
    p = config[name]
    adversarial = p.adversarial_weight > 0
    g_opt = _optimizer(p, config)
    g_opt.build(generator.trainable_variables)
    tracked = {}
    discriminator = None
    if adversarial:
        discriminator = build_discriminator(config.data.crop, config.model.bn_momentum, synchronized_bn)
        d_opt = _optimizer(p, config)
        d_opt.build(discriminator.trainable_variables)
        tracked = {"discriminator": discriminator, "d_optimizer": d_opt}
    position = counter("data_position")  # the batches drawn, counted by train_step
    ema = WeightAverage(generator, config.train.ema_decay) if config.train.ema_decay else None
    tracked_ema = {"ema": ema} if ema else {}
    ckpt = tf.train.Checkpoint(generator=generator, g_optimizer=g_opt, data_position=position, **tracked,
                               **tracked_ema)
    manager = tf.train.CheckpointManager(ckpt, str(workdir / "checkpoints" / name),
                                         max_to_keep=config.train.keep_checkpoints)
    step = g_opt.iterations
    restored = _restore_newest(ckpt, manager, name)
    if restored:
        log.info("%s: resuming from %s at step %d", name, restored, int(step.numpy()))
    elif init_from:
        # Everything asked for must be in the checkpoint: a renamed key would otherwise restore nothing.
        tf.train.Checkpoint(generator=generator, **tracked_ema).restore(
            init_from).assert_existing_objects_matched().expect_partial()
        if ema:  # the phase starts from the previous phase's averaged G, the one that phase saved
            ema.copy_to(generator.trainable_variables)
        log.info("%s: generator initialised from %s", name, init_from)

    summary = {"phase": name, "steps": p.steps, "checkpoint": restored}
    if int(step.numpy()) >= p.steps:
        log.info("%s: already finished (step %d of %d), not redone", name, int(step.numpy()), p.steps)
        return summary | {"skipped": True}

    model = SRGAN(generator, discriminator, content_loss, p.adversarial_weight, ema=ema, data_position=position)
    model.compile(g_optimizer=g_opt, d_optimizer=tracked.get("d_optimizer"))
    cbs = phase_callbacks(name, p.steps, config.train, config.model.scale, ckpt, manager, writer, val_images,
                          workdir / "samples", chief)
    progress, guard = cbs.progress, cbs.guard
    every = config.train.log_every
    start, t0 = int(step.numpy()), time.time()
    print(f"{name}: steps {start}..{p.steps}, content loss {p.content_loss}, adversarial weight "
          f"{p.adversarial_weight}", flush=True)
    # One fit() per stretch of good steps: refused updates and rollbacks end it early, and the next one
    # starts from the current step and the next unseen batch.
    while int(step.numpy()) < p.steps and not (progress.interrupted or guard.failed):
        model.fit(make_dataset(int(position.numpy())), epochs=-(-p.steps // every),
                  initial_epoch=int(step.numpy()) // every, steps_per_epoch=every, callbacks=cbs.all,
                  verbose=0, shuffle=False)
    if progress.interrupted:
        raise Interrupted(f"{progress.interrupted} at {name} step {int(step.numpy())}; "
                          f"checkpoint {manager.latest_checkpoint}")
    if guard.failed:
        raise DivergenceError(f"{guard.failed}; newest checkpoint {manager.latest_checkpoint}")
    _save_generators(generator, workdir, name, write=chief, ema=ema)
    return summary | {"checkpoint": manager.latest_checkpoint, "steps_run": int(step.numpy()) - start,
                      "seconds": round(time.time() - t0, 1), "skipped_steps": int(model.skipped_steps.numpy()),
                      "rollbacks": guard.rollbacks, **cbs.validation.last_eval}


def _restore_newest(ckpt: tf.train.Checkpoint, manager: tf.train.CheckpointManager, name: str) -> str | None:
    """Restores the newest checkpoint that loads, newest first; returns its path (None: there is none).
    A damaged newest checkpoint (a crash while writing, a truncated file) falls back to the one before."""
    failures = []
    for path in reversed(manager.checkpoints):
        try:
            ckpt.restore(path).assert_existing_objects_matched()
            return path
        except Exception as e:  # a damaged file fails in TF's reader with OpError, IndexError, ValueError, ...
            reason = first_line(e)
            log.warning("%s: checkpoint %s cannot be restored (%s); trying the one before", name, path, reason)
            failures.append(f"{Path(path).name}: {reason}")
    if failures:
        raise CheckpointError(f"no checkpoint in {manager.directory} can be restored ({failures[0]}); if the model "
                              "or learning-rate schedule changed, train in a new --workdir")
    return None


def run(config: ml_collections.ConfigDict, workdir: str | Path) -> dict:
    """Trains every configured phase in `workdir`; returns a summary of what was done and written."""
    names = validate(config)
    strategy = distribute.make_strategy(config)
    chief = distribute.is_chief(strategy)
    # The other workers of a multi_worker run write the same checkpoints into a folder of their own, from
    # which they resume: with or without a filesystem shared between the machines.
    workdir = Path(workdir) if chief else Path(workdir) / f"worker-{distribute.task_index(strategy)}"
    workdir.mkdir(parents=True, exist_ok=True)
    with workdir_lock(workdir):
        return _run_locked(config, names, workdir, strategy, chief)


def _run_locked(config: ml_collections.ConfigDict, names: list[str], workdir: Path,
                strategy: tf.distribute.Strategy, chief: bool) -> dict:
    keras.utils.set_random_seed(config.seed)
    if config.train.deterministic:
        tf.config.experimental.enable_op_determinism()  # for the rest of the process; ops run slower

    scale = config.model.scale
    skipped = data.SkippedFiles()
    # Built once, before any model: unusable data fails now, and every fit() of every phase draws from it.
    with section("data"):
        training = data.training_data(config.data, scale, config.train.batch_size, config.seed, skipped,
                                      validation=chief)

    def make_dataset(position: int):
        return distribute.distribute_batches(strategy, lambda: training.batches(position))

    writer = tf.summary.create_file_writer(str(workdir / "tensorboard")) if chief else tf.summary.create_noop_writer()
    sync_bn = strategy.num_replicas_in_sync > 1

    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(config.train.precision)  # G, D and VGG compute in this precision
    try:
        with strategy.scope():
            keras.utils.set_random_seed(config.seed)  # initial weights depend on the seed alone, not on what ran
            with section("model"):
                generator = build_generator(**config.model, synchronized_bn=sync_bn)
            # Every phase's content loss is built before the first step of the first phase (a VGG loss of phase
            # 2 must not fail after days of phase 1), each kind once: VGG19 is loaded once per run.
            losses, by_kind = {}, {}
            for name in names:
                kind = config[name].content_loss
                with section(name):
                    by_kind[kind] = by_kind.get(kind) or make_content_loss(kind, **config.loss)
                losses[name] = by_kind[kind]
            # Written once everything is built: a config that a builder refuses leaves nothing behind.
            atomic_write(workdir / "config.json", lambda tmp: Path(tmp).write_text(
                config.to_json_best_effort(indent=2)))
            phases, init_from = [], None
            for name in names:
                phases.append(train_phase(name, config, workdir, generator, losses[name],
                                          make_dataset, training.validation, writer, init_from, chief, sync_bn))
                init_from = phases[-1]["checkpoint"]
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    if not chief:
        return {"workdir": str(workdir), "phases": phases}
    last = workdir / f"generator_{phases[-1]['phase']}.keras"
    atomic_write(workdir / "generator.keras", lambda tmp: shutil.copyfile(last, tmp))
    summary = {"workdir": str(workdir), "phases": phases, "generator": str(workdir / "generator.keras"),
               "tensorboard": str(workdir / "tensorboard"), "samples": str(workdir / "samples"),
               "evaluation": evaluate_phases(config, workdir, names), "skipped_files": dict(skipped.reasons)}
    atomic_write(workdir / "summary.json", lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=2)))
    return summary


def evaluate_phases(config: ml_collections.ConfigDict, workdir: Path, phases: list[str]) -> dict:
    """Scores bicubic and each phase's generator on the `config.evaluate_on` sets with the literature's
    protocol; returns {set: {method: {"psnr": dB, "ssim": ...}}} and writes the reports under workdir/eval/."""
    out: dict[str, dict] = {}
    sets = [Path(s.strip()) for s in config.evaluate_on.split(",") if s.strip()]
    for set_dir in sets:
        if not (set_dir / "HR").is_dir():
            log.warning("evaluation set %s not found, skipped", set_dir)
            continue
        methods = {"bicubic": "bicubic"} | {p: str(workdir / f"generator_{p}.keras") for p in phases}
        for method, spec in methods.items():
            report_dir = workdir / "eval" / method / set_dir.name
            result = evaluate(load_upscaler(spec, config.model.scale), set_dir, report_dir,
                              degradation=config.data.degradation)
            out.setdefault(set_dir.name, {})[method] = result["mean"]
            log.info("%s on %s: Y-PSNR %.2f dB, SSIM %.4f", method, set_dir.name, result["mean"]["psnr"],
                     result["mean"]["ssim"])
    return out


def main(argv: list[str], fv: flags.FlagValues) -> int:
    """Trains as the flags parsed into `fv` say; returns the exit status (srgan_tf.cli's: 2 for a config that
    cannot be loaded or is invalid, 1 for bad input or a failed run, 130 when interrupted), after one `error:`
    line. `argv` is what parsing left (the program name, then any stray arguments)."""
    if len(argv) > 1:
        print(f"error: unexpected arguments: {' '.join(argv[1:])}", file=sys.stderr)
        return EXIT_BAD_FLAGS
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", force=True)
    config_file = config_flags.get_config_filename(fv["config"])
    try:
        config = fv.config
        config.keys()  # an unloadable file yields a placeholder that raises on first use
    except Exception as e:  # config_flags wraps whatever the config file raised
        reason = [line.strip() for line in str(e).splitlines() if line.strip()][-1]
        print(f"error: cannot load config file {config_file}: {reason}", file=sys.stderr)
        return EXIT_BAD_FLAGS
    workdir = fv.workdir or str(Path("runs") / Path(config_file).stem)
    try:
        summary = run(config, workdir)
    except Interrupted as e:
        print(f"interrupted: {e}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:  # before the phase's own handler is installed
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_FLAGS
    except (*USER_ERRORS, DivergenceError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(json.dumps(summary, indent=2))
    return EXIT_OK


def _flag_error(argv: list[str], e: Exception) -> str:
    """The one `error: ...` line for an exception raised while absl and config_flags parse `argv`."""
    if isinstance(e, (AttributeError, KeyError)):
        lines = str(e.args[0] if e.args else e).replace("\\n", "\n").splitlines() or [""]
        overrides = [a.split("=")[0] for a in argv[1:] if a.startswith("--config.")]
        bad = next((o for o in overrides if any(re.search(rf"\b{re.escape(k)}\b", lines[0]) for k in o.split(".")[1:])),
                   overrides[0] if overrides else "--config")
        hint = lines[1].strip("'\"") if len(lines) > 1 else ""
        return f"error: {bad}: no such config key" + (f" ({hint})" if hint else "")
    text = str(e).strip().splitlines()
    return f"error: {type(e).__name__}: {text[0] if text else ''}"


USAGE = "python -m srgan_tf.train [--config=NAME|FILE.py] [--config.KEY=VALUE ...] [--workdir=DIR]"


def command(argv: list[str]) -> int:
    """The command line `argv` (program name first), parsed into a flag set of its own; returns the exit status.

    `--config` is a shipped config's name (`srgan`, `quickstart`, ...; see srgan_tf.configs) or the path of a
    config file (default: the shipped quickstart). Statuses are srgan_tf.cli's: 0 done (or after --help), 2
    after a one-line error for a bad flag, config name, config file or override, 1 for bad input or a failed
    run, 130 when interrupted. Safe to call more than once in a process (the tests do).
    """
    try:
        # ml_collections loads a config from a file path: names become paths before it reads the arguments.
        argv = configs.resolve_argv(argv)
    except configs.ConfigNameError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_FLAGS
    fv = flags.FlagValues()
    try:
        # config_flags registers the --config.* overrides it finds in `sys_argv` while defining the flag.
        config_flags.DEFINE_config_file("config", str(DEFAULT_CONFIG), "Experiment config: a shipped config's "
                                        f"name ({', '.join(configs.names())}) or a config file's path.",
                                        flag_values=fv, lock_config=True, sys_argv=argv)
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        print(_flag_error(argv, e), file=sys.stderr)
        return EXIT_BAD_FLAGS
    flags.DEFINE_string("workdir", None, "Output folder (default: runs/<config name>).", flag_values=fv)
    if any(a in ("-h", "--help", "-help") for a in argv[1:]):
        print(f"usage: {USAGE}\n{fv.get_help(include_special_flags=False)}")
        return EXIT_OK
    try:
        rest = fv(argv)
    except Exception as e:  # a bad flag, override, or config file (which is code, and may raise anything)
        print(_flag_error(argv, e), file=sys.stderr)
        return EXIT_BAD_FLAGS
    if not flags.FLAGS.is_parsed():  # absl's logging (used inside Keras and TF) wants the global set parsed
        flags.FLAGS.mark_as_parsed()
    return main(rest, fv)


def cli() -> NoReturn:
    """The console script and `python -m srgan_tf.train`: `command(sys.argv)`, then exit with its status."""
    sys.exit(command(sys.argv))


if __name__ == "__main__":
    cli()
