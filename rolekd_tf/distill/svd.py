"""Shared singular-vector machinery for KD-SVD and MHGD (docs/KD.md §4).

Per sample ``b`` a feature map ``F_b`` (H×W×C) is reshaped to ``X_b ∈ R^{HW×C}``; we need its top
right singular vectors ``v_1 … v_K ∈ R^C`` (unit norm, ordered by singular value).

Route (float32 throughout): eigen-decomposition of the Gram matrix on the small side.

* ``HW ≥ C``: ``XᵀX = V Λ Vᵀ`` → ``V`` directly (``s_i² = λ_i``).
* ``HW < C``: ``XXᵀ = U Λ Uᵀ`` → ``V = XᵀU`` with each column divided by its norm (``= s_i``).

Singular values below ``ZERO_REL · s_max`` (i.e. ``λ_i ≤ ZERO_REL² · λ_max``) or an all-zero map
give **zero vectors, never NaN** (a float32 Gram route cannot resolve smaller singular values anyway).

Gradient: :func:`guarded_eigh` is ``tf.linalg.eigh`` with a custom gradient — the usual
``V (diag(ḡ_λ) + F ∘ VᵀḡV) Vᵀ`` rule with ``F_ij = 1/(λ_j − λ_i)``, except that ``F_ij = 0`` when
``|λ_j − λ_i| ≤ TIE_REL · max|λ|`` ("guard near-ties explicitly"; TF's own rule only guards exact
ties and returns huge/inf values on near-ties). This drops the ill-conditioned rotation inside a
near-degenerate eigenspace, which is arbitrary anyway.

Teacher decompositions are taken under ``stop_gradient`` and canonicalised (largest-|.| component
positive); the student keeps its top 4 and the one with the largest ``|cos|`` to the teacher's top-1
is picked and sign-flipped to agree (:func:`align_to_teacher`, as ``Align_rsv`` in the released code).
"""
from __future__ import annotations

import tensorflow as tf

TIE_REL = 1e-5
ZERO_REL = 1e-3


@tf.custom_gradient
def guarded_eigh(a):
    """``tf.linalg.eigh`` of a batch of symmetric matrices ``[..., N, N]`` with near-tie-safe gradient.

    Returns ``(eigenvalues [..., N] ascending, eigenvectors [..., N, N] as columns)``.
    """
    e, v = tf.linalg.eigh(a)

    def grad(ge, gv):
        ge = tf.zeros_like(e) if ge is None else ge
        gv = tf.zeros_like(v) if gv is None else gv
        diff = e[..., tf.newaxis, :] - e[..., :, tf.newaxis]  # [i, j] = λ_j − λ_i
        scale = tf.reduce_max(tf.abs(e), axis=-1, keepdims=True)[..., tf.newaxis]
        tie = tf.abs(diff) <= TIE_REL * scale + 1e-30
        f = tf.where(tie, tf.zeros_like(diff), 1.0 / tf.where(tie, tf.ones_like(diff), diff))
        inner = tf.linalg.diag(ge) + f * tf.matmul(v, gv, adjoint_a=True)
        ga = tf.matmul(v, tf.matmul(inner, v, adjoint_b=True))
        return 0.5 * (ga + tf.linalg.adjoint(ga))

    return (e, v), grad


def _as_matrix(feat) -> tf.Tensor:
    """``[B,H,W,C]`` → ``[B,HW,C]``; ``[B,C]`` → ``[B,1,C]`` (float32)."""
    feat = tf.cast(feat, tf.float32)
    if feat.shape.rank == 4:
        s = tf.shape(feat)
        return tf.reshape(feat, [s[0], s[1] * s[2], s[3]])
    if feat.shape.rank == 2:
        return feat[:, tf.newaxis, :]
    raise ValueError(f"feature map must be rank 2 or 4, got shape {feat.shape}")


def top_right_singular_vectors(feat, k: int) -> tf.Tensor:
    """Top-``k`` right singular vectors of each sample's ``X_b``.

    Args:
      feat: ``[B,H,W,C]`` or ``[B,C]``.
      k: number of vectors; clipped to ``min(HW, C)``.
    Returns:
      ``[B, C, k']`` float32, columns unit norm in decreasing singular-value order; columns whose
      singular value is (numerically) zero are exactly zero. Differentiable (guarded).
    """
    x = _as_matrix(feat)
    hw, c = x.shape[1], x.shape[2]
    if hw is None or c is None:
        raise ValueError(f"feature map needs static spatial/channel sizes, got {feat.shape}")
    n = min(hw, c)
    k = min(k, n)
    if hw >= c:
        gram = tf.matmul(x, x, transpose_a=True)  # [B, C, C]
        e, v = guarded_eigh(gram)
        e = tf.reverse(e[:, -k:], axis=[1])
        v = tf.reverse(v[:, :, -k:], axis=[2])  # [B, C, k]
        lmax = tf.reduce_max(e, axis=1, keepdims=True)
        valid = (e > ZERO_REL**2 * lmax) & (e > 1e-30)
        return tf.where(valid[:, tf.newaxis, :], v, tf.zeros_like(v))
    gram = tf.matmul(x, x, transpose_b=True)  # [B, HW, HW]
    e, u = guarded_eigh(gram)
    e = tf.reverse(e[:, -k:], axis=[1])
    u = tf.reverse(u[:, :, -k:], axis=[2])
    v = tf.matmul(x, u, transpose_a=True)  # [B, C, k], column norms = s_i
    s2 = tf.reduce_sum(tf.square(v), axis=1)  # [B, k]
    lmax = tf.reduce_max(e, axis=1, keepdims=True)
    valid = (e > ZERO_REL**2 * lmax) & (s2 > 1e-30)
    s = tf.sqrt(tf.where(valid, s2, tf.ones_like(s2)))
    v = v / s[:, tf.newaxis, :]
    return tf.where(valid[:, tf.newaxis, :], v, tf.zeros_like(v))


def canonical_sign(v) -> tf.Tensor:
    """Flip each vector ``v [B, C]`` so its largest-|.| component is positive (zero vectors stay 0)."""
    idx = tf.argmax(tf.abs(v), axis=1, output_type=tf.int32)
    pivot = tf.gather(v, idx, axis=1, batch_dims=1)
    sign = tf.where(pivot < 0, -tf.ones_like(pivot), tf.ones_like(pivot))
    return v * sign[:, tf.newaxis]


def teacher_vector(feat) -> tf.Tensor:
    """Teacher top-1 right singular vector ``[B, C]``, no gradient, canonical sign."""
    v = top_right_singular_vectors(tf.stop_gradient(feat), 1)[:, :, 0]
    return tf.stop_gradient(canonical_sign(v))


def align_to_teacher(v_student, v_teacher) -> tf.Tensor:
    """Pick, per sample, the student vector with the largest ``|cos|`` to the teacher's top-1.

    Args:
      v_student: ``[B, C, K]`` (unit or zero columns); v_teacher: ``[B, C]``.
    Returns:
      ``[B, C]``: the chosen student column, sign-flipped so ``cos ≥ 0`` (ties → first column, +).
    """
    cos = tf.einsum("bck,bc->bk", v_student, tf.stop_gradient(v_teacher))
    idx = tf.argmax(tf.abs(cos), axis=1, output_type=tf.int32)
    chosen = tf.gather(tf.transpose(v_student, [0, 2, 1]), idx, axis=1, batch_dims=1)  # [B, C]
    c = tf.gather(cos, idx, axis=1, batch_dims=1)
    sign = tf.stop_gradient(tf.where(c < 0, -tf.ones_like(c), tf.ones_like(c)))
    return chosen * sign[:, tf.newaxis]


def student_vector(feat, v_teacher, k: int = 4) -> tf.Tensor:
    """Student vector aligned to ``v_teacher``: top-``k`` decomposition then :func:`align_to_teacher`."""
    return align_to_teacher(top_right_singular_vectors(feat, k), v_teacher)
