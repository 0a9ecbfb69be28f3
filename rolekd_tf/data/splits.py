"""Class-balanced, disjoint, deterministic train / val / holdout index splits.

Rules (the contract in docs/ARCHITECTURE.md):

* The holdout is carved FIRST from the whole label array with a fixed RNG seed
  (:data:`HOLDOUT_SEED`), independent of ``seed`` and of the train/val sizes, so the
  holdout set is identical across trials and seeds.
* Then train and val are drawn from what is left, class-balanced, with
  ``numpy.random.default_rng(seed)``.
* Class balance: the per-class quota of a set of size ``S`` is ``S * N_c / N`` (``N_c``
  images of class ``c`` in the whole label array), rounded by the largest-remainder method:
  ``floor`` for every class, then the leftover units go to the largest fractional parts
  (ties: lower class id first). So every class count is within 1 of the exact proportion,
  unless a class runs out of images (only when the sets together take almost everything);
  then the shortfall moves to the classes with spare images, still deterministically.
* Sizes: ``val_size=None`` → every image left after holdout and train;
  ``train_size=None`` → every image left after holdout and val;
  both ``None`` → val is 10 % of what is left after the holdout (rounded to nearest),
  train is the rest.
* Each returned index array is sorted (ascending, ``int64``); the SET is a pure function
  of ``(labels, train_size, val_size, holdout_size, seed)``.
"""
from __future__ import annotations

import numbers

import numpy as np

from rolekd_tf.errors import DataError

HOLDOUT_SEED = 12345
DEFAULT_VAL_FRACTION = 0.1


def _check_size(name: str, value, allow_none: bool) -> int | None:
    if value is None:
        if allow_none:
            return None
        raise DataError(f"{name}=None is not allowed; give a non-negative integer")
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise DataError(f"{name}={value!r} must be a non-negative integer"
                        + (" or None" if allow_none else ""))
    value = int(value)
    if value < 0:
        raise DataError(f"{name}={value} must be a non-negative integer"
                        + (" or None" if allow_none else ""))
    return value


def _largest_remainder(size: int, weights: np.ndarray) -> np.ndarray:
    """Integer quotas summing to ``size``, proportional to ``weights`` (largest remainder)."""
    total = int(weights.sum())
    if size == 0 or total == 0:
        return np.zeros(len(weights), dtype=np.int64)
    # Exact rational arithmetic in integers: size * w_c / total.
    prod = size * weights.astype(np.int64)
    base = prod // total
    rem = prod - base * total                  # fractional part, times `total`
    left = size - int(base.sum())
    if left:
        # Largest fractional part first; ties -> lower class index (stable sort).
        order = np.argsort(-rem, kind="stable")
        base[order[:left]] += 1
    return base


def _balanced_quota(size: int, weights: np.ndarray, avail: np.ndarray) -> np.ndarray:
    """Proportional quotas, capped at ``avail`` per class; overflow moved deterministically."""
    q = _largest_remainder(size, weights)
    over = q > avail
    if over.any():
        deficit = int((q[over] - avail[over]).sum())
        q = np.minimum(q, avail)
        while deficit > 0:
            spare = avail - q
            open_ = np.flatnonzero(spare > 0)
            if len(open_) == 0:  # cannot happen: caller checked size <= avail.sum()
                raise AssertionError("no spare capacity for balanced quota")
            # Hand the shortfall out proportionally to the original weights among classes
            # with spare images (largest remainder again), capped by their spare room.
            w = np.where(spare > 0, np.maximum(weights, 1), 0)
            extra = np.minimum(_largest_remainder(deficit, w), spare)
            if extra.sum() == 0:
                extra[open_[0]] = 1
            q += extra
            deficit -= int(extra.sum())
    return q


def resolve_sizes(n: int, train_size: int | None, val_size: int | None,
                  holdout_size: int) -> tuple[int, int]:
    """``(train, val)`` image counts of a split of ``n`` images: ``None`` means "the rest" after
    the holdout and the other size; both ``None``: :data:`DEFAULT_VAL_FRACTION` of the rest is val."""
    rest = n - holdout_size
    if train_size is None and val_size is None:
        val_size = int(round(DEFAULT_VAL_FRACTION * rest))
    if val_size is None:
        val_size = rest - train_size
    if train_size is None:
        train_size = rest - val_size
    return train_size, val_size


def split_indices(labels, *, train_size: int | None, val_size: int | None,
                  holdout_size: int = 0, seed: int = 0
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(train_idx, val_idx, holdout_idx)``: disjoint, class-balanced, sorted.

    See the module docstring for the exact rules. Raises :class:`DataError` for negative or
    non-integer sizes, a bad seed, or sizes that add up to more than ``len(labels)``.
    """
    y = np.asarray(labels)
    if y.ndim != 1:
        raise DataError(f"labels must be a 1-D array, got shape {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"labels must be integers, got dtype {y.dtype}")
    n = int(y.size)
    train_size = _check_size("train_size", train_size, True)
    val_size = _check_size("val_size", val_size, True)
    holdout_size = _check_size("holdout_size", holdout_size, False)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise DataError(f"seed={seed!r} must be a non-negative integer")

    fixed = holdout_size + (train_size or 0) + (val_size or 0)
    if fixed > n:
        raise DataError(
            f"train_size={train_size} + val_size={val_size} + holdout_size={holdout_size} "
            f"= {fixed} exceeds the {n} images available")
    train_size, val_size = resolve_sizes(n, train_size, val_size, holdout_size)

    classes, y_idx = np.unique(y, return_inverse=True)
    counts = np.bincount(y_idx, minlength=len(classes)).astype(np.int64)
    by_class = [np.flatnonzero(y_idx == c) for c in range(len(classes))]  # ascending

    # 1) holdout: fixed seed, depends only on (labels, holdout_size).
    h_q = _balanced_quota(holdout_size, counts, counts)
    rng_h = np.random.default_rng(HOLDOUT_SEED)
    holdout, remaining = [], []
    for c, idx in enumerate(by_class):
        perm = idx[rng_h.permutation(len(idx))]
        holdout.append(perm[:h_q[c]])
        remaining.append(np.sort(perm[h_q[c]:]))
    avail = counts - h_q

    # 2) train / val from the remainder with `seed`. The set whose size was given explicitly
    #    gets its balanced quota first; the other one takes what is left (or its own quota).
    if val_size + train_size == int(avail.sum()):
        # One of them is "the rest": give the explicit one its quota, the other the remainder.
        if train_size <= val_size:
            t_q = _balanced_quota(train_size, counts, avail)
            v_q = avail - t_q
        else:
            v_q = _balanced_quota(val_size, counts, avail)
            t_q = avail - v_q
    else:
        t_q = _balanced_quota(train_size, counts, avail)
        v_q = _balanced_quota(val_size, counts, avail - t_q)

    rng = np.random.default_rng(int(seed))
    train, val = [], []
    for c, idx in enumerate(remaining):
        perm = idx[rng.permutation(len(idx))]
        train.append(perm[:t_q[c]])
        val.append(perm[t_q[c]:t_q[c] + v_q[c]])

    def _cat(parts):
        return np.sort(np.concatenate(parts).astype(np.int64)) if parts else np.zeros(0, np.int64)

    return _cat(train), _cat(val), _cat(holdout)
