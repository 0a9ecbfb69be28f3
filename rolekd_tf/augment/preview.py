"""Preview grid of the 15 ops × levels 0..9 on real images (a visual check of ops.py)."""
from __future__ import annotations

import io

import numpy as np
import tensorflow as tf

from rolekd_tf.augment import ops
from rolekd_tf.errors import DataError
from rolekd_tf.fileio import atomic_write_bytes


def preview_grid(images_uint8, *, fill, seed=(0, 0)) -> np.ndarray:
    """uint8 [15, 10, H, W, 3]: row k = op k applied at levels 0..9 to image ``k % n`` (mask on,
    fixed seed, so a warp's sign / the Cutout centre is the same along a row)."""
    x = np.asarray(images_uint8)
    if x.ndim != 4 or x.shape[-1] != 3 or x.shape[0] < 1:
        raise DataError(f"preview images shape {x.shape}: expected [n ≥ 1, H, W, 3]")
    rows = []
    for k, fn in enumerate(ops.OPS):
        img = np.repeat(x[k % x.shape[0]][None], ops.NUM_LEVELS, axis=0)
        # one seed per row, the same for every level → same sign / centre along the row
        seeds_row = tf.constant([seed[0], seed[1] + k], tf.int32)
        out = []
        for lvl in range(ops.NUM_LEVELS):
            out.append(fn(tf.constant(img[lvl:lvl + 1], tf.float32), tf.constant([lvl]),
                          tf.constant([True]), fill=fill, seed=seeds_row).numpy()[0])
        rows.append(np.stack(out))
    return np.stack(rows).astype(np.uint8)


def write_preview(images_uint8, path, *, fill, seed=(0, 0)) -> None:
    """Write the 15 × 10 grid (rows = ops in ``OP_NAMES`` order, columns = levels 0..9) as a
    PNG at ``path`` (atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = preview_grid(images_uint8, fill=fill, seed=seed)
    n_ops, n_lv = grid.shape[:2]
    fig, axes = plt.subplots(n_ops, n_lv, figsize=(n_lv * 1.0 + 1.2, n_ops * 1.0 + 0.4),
                             squeeze=False)
    for r in range(n_ops):
        for c in range(n_lv):
            ax = axes[r][c]
            ax.imshow(grid[r, c], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"L={c}", fontsize=8)
            if c == 0:
                ax.set_ylabel(ops.OP_NAMES[r], fontsize=8, rotation=0, ha="right", va="center")
    fig.subplots_adjust(left=0.11, right=0.99, top=0.97, bottom=0.01, wspace=0.05, hspace=0.05)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
