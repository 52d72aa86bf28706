"""Training on several devices and machines with tf.distribute: the strategy a config names, the datasets each
replica reads, and which process writes the workdir.

Synchronous data parallelism: every replica holds a copy of G and D, takes its share of each global batch
(`config.train.batch_size` is the global batch), and the replicas' gradients are summed into one update,
so the trained weights follow the single-device run on the same batches. BatchNormalization is synchronised
across replicas (its batch statistics are those of the global batch, as on one device).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import ml_collections
import tensorflow as tf

from srgan_tf.errors import first_line

STRATEGIES = ("none", "mirrored", "multi_worker", "tpu")


class DistributeError(RuntimeError):
    """The configured strategy cannot run here (missing devices, TF_CONFIG or TPU); the message says why."""


_STRATEGIES: dict[tuple, tf.distribute.Strategy] = {}


def make_strategy(config: ml_collections.ConfigDict) -> tf.distribute.Strategy:
    """The strategy named by `config.distribute` (one of STRATEGIES), one per process for each setting.

    none: the default strategy (one device). mirrored: one machine, the devices of `config.devices`
    (comma-separated, e.g. "/gpu:0,/gpu:1"; default every GPU, else the CPU). multi_worker: one process per
    machine, the cluster read from the TF_CONFIG environment variable. tpu: the TPU named by `config.tpu`
    ("" = the TPU VM's own). Asked again for the same setting, it returns the same object: two strategies
    over the same devices in one process would reuse each other's collective-op keys. DistributeError when
    the strategy cannot run here or `config.train.batch_size` (the global batch) does not split evenly over
    its replicas.
    """
    key = (config.distribute, config.devices, config.tpu)
    if key not in _STRATEGIES:
        _STRATEGIES[key] = _new_strategy(config)
    strategy = _STRATEGIES[key]
    replicas = strategy.num_replicas_in_sync
    if config.train.batch_size % replicas:  # before any data or model is built
        raise DistributeError(f"config.train.batch_size: {config.train.batch_size} does not split evenly over "
                              f"{replicas} replicas")
    return strategy


def _new_strategy(config: ml_collections.ConfigDict) -> tf.distribute.Strategy:
    name = config.distribute
    if name == "none":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = [d.strip() for d in config.devices.split(",") if d.strip()] or None
        known = [tf.DeviceSpec.from_string(d.name) for d in tf.config.list_logical_devices()]
        for device in devices or []:
            spec = tf.DeviceSpec.from_string(device)
            if not any(k.device_type == (spec.device_type or "").upper() and k.device_index == spec.device_index
                       for k in known):
                raise DistributeError(f"config.devices: {device} not found; this process has "
                                      f"{', '.join(f'/{k.device_type.lower()}:{k.device_index}' for k in known)}")
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker":
        cluster = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})
        if not cluster.get("worker") and not cluster.get("chief"):
            raise DistributeError("config.distribute=multi_worker needs the TF_CONFIG environment variable "
                                  "(cluster and task) on every machine; see the README's distributed section")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=config.tpu or "local")
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except Exception as e:  # no TPU here: ValueError, NotFoundError, ... with long messages
            first = first_line(e)
            raise DistributeError(f"config.distribute=tpu: no TPU {config.tpu or '(local)'} ({first})") from None
        return tf.distribute.TPUStrategy(resolver)
    raise DistributeError(f"config.distribute: must be one of {STRATEGIES}, got {name!r}")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the workdir: always, except on the non-chief workers of multi_worker."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type in (None, "chief"):
        return True
    return task_type == "worker" and task_id == 0 and "chief" not in resolver.cluster_spec().as_dict()


def task_index(strategy: tf.distribute.Strategy) -> int:
    """This worker's index in the cluster (0 on one machine)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    return int(resolver.task_id or 0) if resolver is not None and resolver.task_id is not None else 0


def distribute_batches(strategy: tf.distribute.Strategy, make_global: Callable[[], tf.data.Dataset],
                       ) -> tf.data.Dataset | tf.distribute.DistributedDataset:
    """The training batches for `fit()` under `strategy`.

    `make_global()` gives the global batches, of a static batch size (every process builds the same ones:
    batch k depends only on the seed and k). Each replica gets a contiguous slice of batch / replicas
    examples of each batch, so the replicas together see exactly the single-device run's batches. The batch
    size must split evenly over the replicas (make_strategy checks the configured one).
    """
    if strategy.num_replicas_in_sync == 1:
        return make_global()

    def pipeline(context: tf.distribute.InputContext) -> tf.data.Dataset:
        batches = make_global()
        global_batch = tf.nest.flatten(batches.element_spec)[0].shape[0]
        if global_batch is None:
            raise ValueError("distribute_batches: the global batches need a static batch size (drop_remainder=True)")
        per_replica = context.get_per_replica_batch_size(global_batch)
        local = context.num_replicas_in_sync // context.num_input_pipelines  # replicas fed by this pipeline
        first = context.input_pipeline_id * local * per_replica
        mine = batches.map(lambda lr, hr: (lr[first:first + local * per_replica],
                                                 hr[first:first + local * per_replica]))
        return mine.unbatch().batch(per_replica, drop_remainder=True)

    options = tf.distribute.InputOptions(experimental_fetch_to_device=True)
    return strategy.distribute_datasets_from_function(pipeline, options)
