"""tf.data input pipelines: per-epoch PBA policies from a table variable, then the baseline
augmentation, then normalisation (docs/ARCHITECTURE.md, rolekd_tf.augment).

Determinism: the shuffle of epoch ``e`` is ``argsort(stateless_uniform(seed=(seed, e)))`` and
the augmentation seed of batch ``t`` of epoch ``e`` is ``fold_in(fold_in((seed, 1), e), t)``, so
a pipeline started at ``start_epoch`` reproduces exactly the batches an uninterrupted run would
see from that epoch on. The epoch is carried with each batch (not read from Python state), so
prefetching can never apply another epoch's policy; the policy row itself is read from the
``PolicyTable`` variable when the batch is built — write rows before the pipeline reaches
them (the trainer assigns the whole schedule up front; PBT writes the next round's rows before
starting it).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

import keras

from rolekd_tf.augment.apply import apply_policy, baseline_augment
from rolekd_tf.augment.policy import POLICY_LEN
from rolekd_tf.errors import ConfigError, DataError, ScheduleError


class PolicyTable:
    """One 60-int policy per epoch, held in a non-trainable ``tf.Variable`` int32 [epochs, 60].

    Epochs past the last row use the last row. Updating the variable changes what the next
    batches get without rebuilding or retracing the dataset.
    """

    def __init__(self, epochs: int):
        epochs = int(epochs)
        if epochs < 1:
            raise ConfigError(f"PolicyTable epochs={epochs}: must be ≥ 1")
        self.epochs = epochs
        self.variable = tf.Variable(tf.zeros([epochs, POLICY_LEN], tf.int32),
                                    trainable=False, name="policy_table")

    @staticmethod
    def _check(arr, shape_desc):
        arr = np.asarray(arr)
        if arr.dtype.kind not in "iu" and not (arr.dtype.kind == "f" and np.all(arr == np.round(arr))):
            raise ScheduleError(f"policy values must be integers, got dtype {arr.dtype}")
        arr = arr.astype(np.int64)
        if arr.size and (arr.min() < 0 or arr.max() > 10):
            raise ScheduleError(f"policy values must be in 0..10, got range "
                                f"{int(arr.min())}..{int(arr.max())} ({shape_desc})")
        return arr.astype(np.int32)

    def assign_schedule(self, schedule) -> None:
        """Set all rows from an int array [E, 60] (or anything with ``.as_array()``). E < epochs:
        the last row is repeated; E > epochs is an error."""
        arr = schedule.as_array() if hasattr(schedule, "as_array") else schedule
        arr = np.asarray(arr)
        if arr.ndim != 2 or arr.shape[1] != POLICY_LEN or arr.shape[0] < 1:
            raise ScheduleError(f"schedule shape {arr.shape}: expected [epochs, {POLICY_LEN}]")
        if arr.shape[0] > self.epochs:
            raise ScheduleError(f"schedule has {arr.shape[0]} epochs, table holds {self.epochs}")
        arr = self._check(arr, "schedule")
        if arr.shape[0] < self.epochs:
            arr = np.concatenate([arr, np.repeat(arr[-1:], self.epochs - arr.shape[0], 0)])
        self.variable.assign(arr)

    def set_row(self, epoch: int, policy) -> None:
        """Set the policy of one epoch (``policy``: 60 ints, or anything with ``.as_array()``
        / ``.values``)."""
        epoch = int(epoch)
        if not 0 <= epoch < self.epochs:
            raise ConfigError(f"epoch={epoch}: table holds epochs 0..{self.epochs - 1}")
        if hasattr(policy, "as_array"):
            policy = policy.as_array()
        elif hasattr(policy, "values") and not isinstance(policy, np.ndarray):
            policy = policy.values
        arr = np.asarray(policy).reshape(-1)
        if arr.shape[0] != POLICY_LEN:
            raise ScheduleError(f"policy has {arr.shape[0]} values, expected {POLICY_LEN}")
        self.variable[epoch].assign(self._check(arr, f"epoch {epoch}"))

    def as_array(self) -> np.ndarray:
        return self.variable.numpy()

    def row(self, epoch):
        """int32 [60] tensor of ``epoch`` (clamped to the last row); usable inside tf.function."""
        e = tf.clip_by_value(tf.cast(epoch, tf.int32), 0, self.epochs - 1)
        return tf.gather(self.variable, e)


class SetPolicyCallback(keras.callbacks.Callback):
    """Writes ``policy_fn(epoch)`` (60 ints, or None to leave the row) into the table for
    ``epoch .. epoch + lookahead`` at the start of each epoch (and for the first epochs at
    ``on_train_begin``). ``lookahead`` ≥ the number of prefetched batches' epochs keeps
    prefetched batches on the right policy; with ``lookahead=0`` a batch prefetched before the
    epoch started may still see the previous value of its row."""

    def __init__(self, table: PolicyTable, policy_fn, *, lookahead: int = 1):
        super().__init__()
        self.table = table
        self.policy_fn = policy_fn
        self.lookahead = int(lookahead)

    def _write(self, epoch):
        for e in range(epoch, min(epoch + self.lookahead + 1, self.table.epochs)):
            p = self.policy_fn(e)
            if p is not None:
                self.table.set_row(e, p)

    def on_train_begin(self, logs=None):
        params = getattr(self, "params", None) or {}
        self._write(int(params.get("initial_epoch", 0) or 0))

    def on_epoch_begin(self, epoch, logs=None):
        self._write(int(epoch))


def _normaliser(info):
    try:
        mean = np.asarray(info.mean, np.float32).reshape(3)
        std = np.asarray(info.std, np.float32).reshape(3)
    except (AttributeError, ValueError) as exc:
        raise ConfigError(f"info must have .mean and .std 3-tuples in [0,1] units: {exc}") from exc
    if np.any(std <= 0):
        raise ConfigError(f"info.std={tuple(std)}: must be > 0")
    return mean, std


def _check_xy(x_uint8, y):
    x = np.asarray(x_uint8)
    y = np.asarray(y)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise DataError(f"images shape {x.shape}: expected [N, H, W, 3]")
    if x.dtype != np.uint8:
        raise DataError(f"images dtype {x.dtype}: expected uint8")
    if y.shape[0] != x.shape[0]:
        raise DataError(f"{x.shape[0]} images but {y.shape[0]} labels")
    return x, y.astype(np.int32)


def make_train_dataset(x_uint8, y, info, *, batch_size, seed, policy_table=None, start_epoch=0,
                       pad_crop=True, flip=True, cutout=16) -> tf.data.Dataset:
    """Infinite training stream of ``(normalised float32 [B,H,W,3], int32 [B])`` batches.

    Epoch ``e`` (from ``start_epoch``) is a fresh seeded permutation cut into
    ``N // batch_size`` full batches; each batch gets ``policy_table``'s row for its epoch
    (``apply_policy``; skipped when ``policy_table`` is None), then ``baseline_augment``
    (pad 4 + crop if ``pad_crop``, flip, Cutout ``cutout``), then ``(x/255 − mean)/std``.
    """
    x, y = _check_xy(x_uint8, y)
    batch_size = int(batch_size)
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size}: must be ≥ 1")
    n = x.shape[0]
    steps = n // batch_size
    if steps < 1:
        raise DataError(f"{n} training images < batch_size={batch_size}")
    if policy_table is not None and not isinstance(policy_table, PolicyTable):
        raise ConfigError(f"policy_table must be a PolicyTable or None, got "
                          f"{type(policy_table).__name__}")
    mean, std = _normaliser(info)
    fill = tf.constant(mean * 255.0, tf.float32)
    mean_t, std_t = tf.constant(mean), tf.constant(std)
    seed = int(seed)
    start_epoch = int(start_epoch)
    x_t = tf.constant(x)
    y_t = tf.constant(y)
    base_seed = tf.constant([seed, 1], tf.int64)

    def epoch_batches(epoch):
        perm = tf.argsort(tf.random.stateless_uniform(
            [n], seed=tf.stack([tf.constant(seed, tf.int64), epoch])))
        idx = tf.reshape(perm[:steps * batch_size], [steps, batch_size])
        return tf.data.Dataset.from_tensor_slices(
            (tf.fill([steps], epoch), tf.range(steps, dtype=tf.int64), idx))

    def augment(epoch, step, idx):
        images = tf.cast(tf.gather(x_t, idx), tf.float32)
        labels = tf.gather(y_t, idx)
        s = tf.random.experimental.stateless_fold_in(
            tf.random.experimental.stateless_fold_in(base_seed, epoch), step)
        s_pol, s_base = tf.unstack(tf.random.experimental.stateless_split(s, 2))
        if policy_table is not None:
            images = apply_policy(images, policy_table.row(epoch), fill=fill, seed=s_pol)
        images = baseline_augment(images, fill=fill, pad=4 if pad_crop else 0, flip=flip,
                                  cutout=cutout, seed=s_base)
        images = (images / 255.0 - mean_t) / std_t
        return images, labels

    ds = tf.data.Dataset.counter(start=start_epoch, dtype=tf.int64).flat_map(epoch_batches)
    ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def make_eval_dataset(x_uint8, y, info, *, batch_size) -> tf.data.Dataset:
    """One pass, in order, normalisation only, partial last batch kept."""
    x, y = _check_xy(x_uint8, y)
    batch_size = int(batch_size)
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size}: must be ≥ 1")
    mean, std = _normaliser(info)
    mean_t, std_t = tf.constant(mean), tf.constant(std)

    def norm(images, labels):
        return (tf.cast(images, tf.float32) / 255.0 - mean_t) / std_t, labels

    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
    return ds.map(norm, num_parallel_calls=tf.data.AUTOTUNE,
                  deterministic=True).prefetch(tf.data.AUTOTUNE)
