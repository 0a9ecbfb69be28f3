"""Training on several devices: strategy selection and the replica-aware gradient helpers.

This module is the one place the multi-device semantics live (``train.py`` / ``run_training``
and :class:`~rolekd_tf.distill.Distiller` call it; with one device every helper is the identity,
so the single-device path is unchanged bit for bit).

Which strategy (:func:`select_strategy`, config ``train.devices``):
  ``None`` → a ``tf.distribute.MirroredStrategy`` over all visible GPUs when there are two or more,
  else no strategy (the default single-device path). A list of names (``["/gpu:0", "/gpu:1"]``,
  ``["/cpu:0", "/cpu:1"]``) → ``MirroredStrategy`` over exactly those; one name → that device alone
  (``OneDeviceStrategy``). Names must exist among the logical devices TensorFlow sees.

What one step computes with ``R`` replicas (the update equals the single-device one):
  * Batch: ``train.batch_size`` is the GLOBAL batch; the input pipeline builds each global batch
    (same permutation, same per-batch augmentation seeds, the epoch carried in the element) and
    Keras splits it into ``R`` equal shards of ``batch_size / R`` (the batch size must be a multiple
    of ``R``). The learning rate is therefore not rescaled.
  * Loss scaling: each replica differentiates its LOCAL mean loss (CE, soft, dml: means over its
    shard). Keras 3's ``optimizer.apply`` (keras/src/backend/tensorflow/optimizer.py,
    ``_all_reduce_sum_gradients``) SUMS the gradients it is given across replicas, after applying
    ``global_clipnorm`` to the per-replica ones, and Keras' own ``train_step`` compensates by scaling
    the loss by ``1/R``. We do not rely on that: :func:`mean_over_replicas` all-reduces the raw
    gradients with MEAN (equal shards → exactly the gradient of the global mean loss), the update
    rule is formed on those GLOBAL gradients (coupled weight decay ``wd·w`` added once; the
    ``clip_to_task_grad`` per-variable bound ``‖∇CE‖`` and the clipped ``∇L_KD`` are the all-reduced
    ones, so the clip is the single-device clip), and :func:`for_optimizer` applies
    ``train.grad_clip_norm`` to the global gradient and hands ``g/R`` to ``optimizer.apply``, whose
    SUM restores ``g`` (its own global-norm clip then sees ``‖g/R‖ ≤ clipnorm`` and is a no-op).
  * Batch-relational KD losses (``ii``, ``mhgd``, ``svd``, ``rkd``: pairwise/graph terms over the
    batch, or a sum over it) are computed on the all-gathered GLOBAL batch of student and teacher
    outputs (:func:`gather_batch`, differentiable: its gradient is the all-reduced upstream
    gradient's slice of this replica), so their value and gradient are the single-device ones. Every replica computes the
    same global KD loss (``R``-fold redundant KD compute; the networks' forward/backward is split).
  * BatchNorm: the student's (and DML peer's) BN layers are switched to
    ``synchronized=True`` while training under a strategy (:func:`synchronize_batchnorm`), so the
    batch statistics — and the moving averages — are those of the global batch. Synchronised BN
    computes ``Var = E[x²] − E[x]²`` instead of ``E[(x − E[x])²]``: equal up to float32 rounding.
    The flag is switched off again before ``model.keras`` is written (a saved model is not tied
    to a strategy). The frozen teacher runs in inference mode and needs nothing.
  * Checkpoints are numpy arrays of the (mirrored) variables: reading a ``MirroredVariable`` gives
    its (identical) replica value, assigning one writes all replicas, so ``state.npz`` is the same
    format with or without a strategy and a run may be resumed on another device count (the
    ``train.devices`` value is part of the run's config, so change it with a new ``--out``).
  * XLA: Keras disables ``jit_compile`` under ``tf.distribute``.

Scaling the search out is done by Keras Tuner's chief/worker processes, one per GPU, not here.
"""
from __future__ import annotations

import re

from rolekd_tf.errors import ConfigError

_DEVICE_RE = re.compile(r"^(/job:[^/]+/replica:\d+/task:\d+)?/(device:)?(cpu|gpu):\d+$", re.IGNORECASE)


def check_device_names(devices) -> None:
    """``train.devices``: ``None`` or a non-empty list of distinct names like ``/gpu:0``, ``/cpu:1``."""
    if devices is None:
        return
    if (not isinstance(devices, (list, tuple)) or not devices
            or not all(isinstance(d, str) and _DEVICE_RE.match(d) for d in devices)
            or len({_canonical(d) for d in devices}) != len(devices)):
        raise ConfigError(f"train.devices={devices!r} is invalid; allowed: null or a list of distinct "
                          "device names like ['/gpu:0', '/gpu:1'] or ['/cpu:0', '/cpu:1']")


def _canonical(name: str) -> str:
    """``'/GPU:0'``, ``'/device:gpu:0'``, ``'/job:localhost/replica:0/task:0/device:GPU:0'`` → ``'GPU:0'``."""
    kind, idx = name.split(":")[-2:]
    return f"{kind.rsplit('/', 1)[-1].upper()}:{idx}"


def select_strategy(devices=None):
    """The ``tf.distribute.Strategy`` for ``train.devices`` (module docstring), or ``None`` for the
    default single-device path. Unknown device names raise :class:`ConfigError`."""
    import tensorflow as tf

    check_device_names(devices)
    if devices is None:
        gpus = tf.config.list_logical_devices("GPU")
        if len(gpus) < 2:
            return None
        return _mirrored([g.name for g in gpus])
    visible = {_canonical(d.name): d.name for d in tf.config.list_logical_devices()}
    missing = [d for d in devices if _canonical(d) not in visible]
    if missing:
        raise ConfigError(f"train.devices names {missing!r}, which TensorFlow does not see; "
                          f"visible: {sorted(visible)}")
    names = [visible[_canonical(d)] for d in devices]
    if len(names) == 1:
        return tf.distribute.OneDeviceStrategy(names[0])
    return _mirrored(names)


_STRATEGIES: dict = {}


def _mirrored(names):
    """One ``MirroredStrategy`` per device set and process: a second instance over the same devices
    reuses the collective group/instance keys of the first, and TF then fails with "Shape mismatch
    in the collective instance …" (seen with two trainings in one process, TF 2.21)."""
    import tensorflow as tf

    key = tuple(names)
    if key not in _STRATEGIES:
        _STRATEGIES[key] = tf.distribute.MirroredStrategy(list(names))
    return _STRATEGIES[key]


def check_batch_size(batch_size: int, strategy) -> None:
    """The global batch must split into equal shards (equal shards make the mean of the
    replicas' mean losses the global mean loss)."""
    r = 1 if strategy is None else int(strategy.num_replicas_in_sync)
    if int(batch_size) % r:
        raise ConfigError(f"train.batch_size={batch_size} must be a multiple of the {r} devices "
                          "it is split across (train.devices)")


def replicas() -> int:
    """Replicas in sync of the current strategy (1 without one); a Python int, usable while tracing."""
    import tensorflow as tf

    return int(tf.distribute.get_strategy().num_replicas_in_sync)


def mean_over_replicas(tensors: list) -> list:
    """All-reduce MEAN of a list of per-replica tensors (replica context); identity for one replica."""
    if replicas() == 1:
        return tensors
    import tensorflow as tf

    return list(tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.MEAN, list(tensors)))


def gather_batch(tensors: list) -> list:
    """Concatenate each per-replica ``[b, …]`` tensor over replicas → ``[R·b, …]`` (differentiable);
    identity for one replica."""
    if replicas() == 1:
        return tensors
    import tensorflow as tf

    ctx = tf.distribute.get_replica_context()
    r = ctx.num_replicas_in_sync
    # Not ReplicaContext.all_gather: its gradient all-gathers int32 sizes, and on CPU devices those
    # collectives were launched in different orders on the two replicas (TF 2.21: "Collective
    # instance … expected type 0 … got type 2"). Instead each replica writes its tensor into its
    # own slot of a zero [R, b, …] tensor and the slots are all-reduced (SUM): exact (x + 0 = x),
    # and the gradient (an all-reduce of the upstream gradient, sliced) is all_gather's.
    onehot = tf.one_hot(ctx.replica_id_in_sync_group, r)
    slots = []
    for t in tensors:
        t = tf.convert_to_tensor(t)
        slots.append(tf.reshape(tf.cast(onehot, t.dtype), [r] + [1] * t.shape.rank) * t[None])
    full = ctx.all_reduce(tf.distribute.ReduceOp.SUM, slots)
    return [tf.reshape(f, [-1] + list(t.shape[1:])) for f, t in zip(full, tensors)]


def for_optimizer(grads: list, optimizer) -> list:
    """Global gradients → what ``optimizer.apply`` must receive so that its cross-replica SUM
    applies exactly ``grads``: ``train.grad_clip_norm`` applied here to the global gradient, then
    ``/R``. Identity for one replica (the optimizer clips as before)."""
    r = replicas()
    if r == 1:
        return grads
    clip = getattr(optimizer, "global_clipnorm", None)
    if clip:
        from keras.src.optimizers.base_optimizer import clip_by_global_norm

        grads = clip_by_global_norm(list(grads), clip)
    return [g / float(r) for g in grads]


def synchronize_batchnorm(model, on: bool = True) -> int:
    """Set ``synchronized`` on every ``BatchNormalization`` inside ``model``; returns how many.
    Read by Keras at call time (``ops.moments(..., synchronized=…)``), so no rebuild is needed."""
    import keras

    n = 0
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = bool(on)
            n += 1
    return n
