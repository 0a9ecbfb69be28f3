"""PBA's policy rule and the standard CIFAR augmentation, vectorised over the batch.

``apply_policy`` follows PBA's per-image rule (docs/METHOD.md §1) for every sample at once:

1. draw a cap ``count ∈ {0,1,2}`` with p = (0.2, 0.3, 0.5);
2. visit the 30 (op, p, level) slots in a per-sample random order (the order of stateless
   uniform keys); slot *j* fires when ``U_j < p_j`` and fewer than ``count`` slots fired before.

At most two slots fire: they are the wanted slots (``U_j < p_j``) with the smallest and second
smallest keys (two argmins), capped by ``count``; the 15-op dispatcher then runs twice.
"""
from __future__ import annotations

import tensorflow as tf

from rolekd_tf.augment import ops as _ops
from rolekd_tf.augment.policy import LEVEL, NUM_SLOTS, POLICY_LEN, PROB, PROB_MAX, slot_op

COUNT_PROBS = (0.2, 0.3, 0.5)         # cap on fired ops per image


def _as_float_images(images):
    images = tf.convert_to_tensor(images)
    if images.dtype != tf.float32:
        images = tf.cast(images, tf.float32)
    return images


def _fill(fill):
    return tf.reshape(tf.cast(tf.convert_to_tensor(fill), tf.float32), [3])


def sample_policy_ops(policy, batch_size, seed):
    """Draw which ops fire for each sample (PBA's rule).

    Args:
      policy: int32 ``[60]`` in the layout of :mod:`rolekd_tf.augment.policy` (slot s:
        ``v[2s]`` prob 0..10, ``v[2s+1]`` level, op ``s % 15``).
      batch_size: scalar.
      seed: int32 ``[2]`` stateless seed.

    Returns:
      ``(ops, levels, fired)``: int32 ``[B, 2]`` op index of the first / second fired slot,
      int32 ``[B, 2]`` their levels, bool ``[B, 2]`` whether that step fires at all.
    """
    policy = tf.reshape(tf.cast(tf.convert_to_tensor(policy), tf.int32), [POLICY_LEN])
    slot_fields = tf.reshape(policy, [NUM_SLOTS, 2])                    # [30, (prob, level)]
    probs = tf.cast(slot_fields[:, PROB], tf.float32) / PROB_MAX        # [30]
    levels = slot_fields[:, LEVEL]                                      # [30]
    s_count, s_perm, s_fire = tf.unstack(tf.random.experimental.stateless_split(seed, 3))

    u = tf.random.stateless_uniform([batch_size], seed=s_count)
    count = tf.where(u < COUNT_PROBS[0], 0, tf.where(u < COUNT_PROBS[0] + COUNT_PROBS[1], 1, 2))
    # The walk in a uniformly random order: slot j is visited at the rank of its key; a slot
    # fires when its coin U_j < p_j and fewer than ``count`` slots fired before it. So the
    # fired slots are the ``count`` wanted slots (U_j < p_j) with the smallest keys — found
    # with two argmins instead of sorting the 30 slots.
    key = tf.random.stateless_uniform([batch_size, NUM_SLOTS], seed=s_perm)
    coin = tf.random.stateless_uniform([batch_size, NUM_SLOTS], seed=s_fire)
    want = coin < probs[None, :]
    n_want = tf.reduce_sum(tf.cast(want, tf.int32), axis=1)
    key = tf.where(want, key, 2.0)                                       # unwanted: last
    first = tf.argmin(key, axis=1, output_type=tf.int32)
    key = tf.where(tf.equal(tf.range(NUM_SLOTS)[None, :], first[:, None]), 3.0, key)
    second = tf.argmin(key, axis=1, output_type=tf.int32)
    slots = tf.stack([first, second], axis=1)                            # [B, 2]
    fired = tf.stack([(count >= 1) & (n_want >= 1), (count >= 2) & (n_want >= 2)], axis=1)
    return slot_op(slots), tf.gather(levels, slots), fired


def apply_policy(images, policy, *, fill, seed, method="fused"):
    """Apply a 60-int PBA policy to a batch.

    Args:
      images: float32 (or uint8) ``[B, H, W, 3]`` in 0..255.
      policy: int32 ``[60]`` tensor (may be a read of a ``tf.Variable``).
      fill: float32 ``[3]`` dataset mean colour in 0..255.
      seed: int32 ``[2]`` stateless seed.
      method: dispatcher, see ``ops.apply_op_by_index``.

    Returns:
      float32 ``[B, H, W, 3]``, integer-valued 0..255 (each fired op does a uint8 round trip).
    """
    images = _as_float_images(images)      # rounded / clipped to 0..255 by the first op step
    fill = _fill(fill)
    seed = tf.convert_to_tensor(seed)
    b = tf.shape(images)[0]
    s_draw, s_op1, s_op2 = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    op_idx, levels, fired = sample_policy_ops(policy, b, s_draw)
    for k, s in enumerate((s_op1, s_op2)):
        images = _ops.apply_op_by_index(images, op_idx[:, k], levels[:, k], fired[:, k],
                                        fill=fill, seed=s, method=method)
    return images


def baseline_augment(images, *, fill, pad=4, flip=True, cutout=16, seed):
    """PBA's standard augmentation, vectorised: mean-pad ``pad`` px + random crop back to
    H×W (offsets 0..2·pad−1, docs/METHOD.md §1), horizontal flip with p = 0.5, then Cutout
    ``cutout``×``cutout`` at a uniform centre (clipped at the border; 0 disables). Padding and
    Cutout use the exact ``fill`` (so they normalise to 0, as PBA's zeros do).

    Returns float32 ``[B, H, W, 3]``.
    """
    images = _as_float_images(images)
    fill = _fill(fill)
    seed = tf.convert_to_tensor(seed)
    s = tf.shape(images)
    b, h, w = s[0], s[1], s[2]
    s_off, s_flip, s_cut = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    pad, cutout = int(pad), int(cutout)
    if pad < 0 or cutout < 0:
        raise ValueError(f"pad={pad}, cutout={cutout}: expected ≥ 0")

    if pad > 0:
        off = tf.random.stateless_uniform([b, 2], seed=s_off, minval=0, maxval=2 * pad,
                                          dtype=tf.int32)
        oy, ox = off[:, 0], off[:, 1]
    else:
        oy = ox = tf.zeros([b], tf.int32)
    if flip:
        do_flip = tf.random.stateless_uniform([b], seed=s_flip) < 0.5
    else:
        do_flip = tf.zeros([b], tf.bool)
    if cutout > 0:
        r, c = _ops.cutout_centres(s_cut, b, h, w)
    else:
        r = c = tf.zeros([b], tf.int32)
    if pad == 0 and not flip and cutout == 0:
        return images
    return _baseline_kernel(pad, cutout)(images, oy, ox, do_flip, r, c, fill)


_BASELINE: dict = {}


def _baseline_kernel(pad, cutout):
    """The crop + flip + Cutout of ``baseline_augment`` as one XLA-compiled function (the random
    draws stay outside, so they are the plain TF kernels' values with or without XLA): each
    output pixel gathers ``padded[r + oy, c' + ox]`` (c' = c or W−1−c), the mean colour where
    that falls in the padding, then the Cutout box is painted."""
    key = (pad, cutout)
    if key not in _BASELINE:
        def kernel(images, oy, ox, do_flip, r, c, fill):
            dyn = tf.shape(images)
            b, h, w = (images.shape[i] if images.shape[i] is not None else dyn[i]
                       for i in range(3))
            rows = tf.range(h)[None, :] + oy[:, None] - pad                       # [B, H]
            cols = tf.range(w)[None, :]
            cols = tf.where(do_flip[:, None], w - 1 - cols, cols) + ox[:, None] - pad  # [B, W]
            valid = (((rows >= 0) & (rows < h))[:, :, None]
                     & ((cols >= 0) & (cols < w))[:, None, :])                   # [B, H, W]
            if cutout > 0:
                half = cutout // 2
                in_r = (tf.range(h)[None, :] >= (r - half)[:, None]) & (
                    tf.range(h)[None, :] < (r + half)[:, None])
                in_c = (tf.range(w)[None, :] >= (c - half)[:, None]) & (
                    tf.range(w)[None, :] < (c + half)[:, None])
                valid &= ~(in_r[:, :, None] & in_c[:, None, :])
            src = (tf.range(b)[:, None, None] * (h * w)
                   + tf.clip_by_value(rows, 0, h - 1)[:, :, None] * w
                   + tf.clip_by_value(cols, 0, w - 1)[:, None, :])                 # [B, H, W]
            out = tf.gather(tf.reshape(images, [-1, 3]), src)                     # [B, H, W, 3]
            return tf.where(valid[..., None], out, tf.reshape(fill, [1, 1, 1, 3]))
        _BASELINE[key] = tf.function(kernel, jit_compile=True, autograph=False,
                                     reduce_retracing=False)
    return _BASELINE[key]
