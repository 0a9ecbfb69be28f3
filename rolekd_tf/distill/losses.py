"""Distillation losses (docs/KD.md §2–§7) and their registry.

Every loss object is called as ``loss(student_outs, teacher_outs) -> dict`` where ``*_outs`` are
the lists returned by :func:`rolekd_tf.models.feature_model` views, ``[tap_1 … tap_n, logits]``
(taps ``[B,H,W,C]``, logits ``[B,K]``). The dict holds one scalar per term (names in ``loss.terms``)
and ``"kd"``, their (weighted) total. All math is float32. ``B`` = batch, ``K`` = classes.

=========  ================================================================  ==================
name       formula                                                           reduction
=========  ================================================================  ==================
soft       KL(softmax(z_T/T) ‖ softmax(z_S/T)) [· T² if ``t2_scale``]        mean over batch
dml        ½[KL(p_T‖p_S) + KL(p_S‖p_T)], T = 1 (``teacher`` = trained peer)  mean over batch
rkd        50·Huber(ψ_D^S, ψ_D^T) + 100·Huber(ψ_A^S, ψ_A^T) on l2n(logits)   mean over entries
svd        Σ_l Σ_{b,a,a′} (R_l^S − sg R_l^T)², R = exp(−(v_l[a]−v_{l−1}[a′])²/8)  SUM
mhgd       Σ_pairs Σ_h Σ_rows KL(softmax(G^S) ‖ softmax(G^T))                SUM
ii         mhgd + rkd + svd (weights 1)                                      —
=========  ================================================================  ==================

``get_loss(name)`` returns the class; unknown names raise :class:`ConfigError` listing ``LOSSES``.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from rolekd_tf.distill import svd as _svd
from rolekd_tf.errors import ConfigError


# --------------------------------------------------------------------------- small functions
def kl_from_logits(p_logits, q_logits, axis=-1):
    """``Σ_axis softmax(p)·(log_softmax(p) − log_softmax(q))`` — KL(p ‖ q), unreduced over batch."""
    lp = tf.nn.log_softmax(p_logits, axis=axis)
    lq = tf.nn.log_softmax(q_logits, axis=axis)
    return tf.reduce_sum(tf.exp(lp) * (lp - lq), axis=axis)


def soft_kd_loss(z_s, z_t, temperature=3.0, t2_scale=False):
    """Hinton KD. ``z_s, z_t [B,K]`` → scalar ``mean_b KL(softmax(z_T/T) ‖ softmax(z_S/T))``
    (× T² if ``t2_scale``; released code: T=3, no T²). Teacher side under stop_gradient."""
    t = float(temperature)
    z_s = tf.cast(z_s, tf.float32) / t
    z_t = tf.stop_gradient(tf.cast(z_t, tf.float32)) / t
    loss = tf.reduce_mean(kl_from_logits(z_t, z_s))
    return loss * (t * t) if t2_scale else loss


def dml_loss(z_s, z_p):
    """DML symmetric KL at T=1: ``½ mean_b [KL(p_P‖p_S) + KL(p_S‖p_P)]``; ``z_p`` is stop-gradiented
    (the peer gets its own, mirrored update)."""
    z_s = tf.cast(z_s, tf.float32)
    z_p = tf.stop_gradient(tf.cast(z_p, tf.float32))
    return 0.5 * tf.reduce_mean(kl_from_logits(z_p, z_s) + kl_from_logits(z_s, z_p))


def huber(x, y, delta=1.0):
    """Mean Huber (smooth-L1 at δ=1) over all entries."""
    d = tf.abs(x - y)
    return tf.reduce_mean(tf.where(d <= delta, 0.5 * tf.square(d), delta * (d - 0.5 * delta)))


def l2n(x, axis=-1):
    """``x / sqrt(max(‖x‖², 1e-12))`` (as ``tf.nn.l2_normalize``)."""
    return x * tf.math.rsqrt(tf.maximum(tf.reduce_sum(tf.square(x), axis=axis, keepdims=True), 1e-12))


def _pairwise_distance(x):
    """``d_ij = sqrt(max(‖x_i − x_j‖², 1e-12))`` for ``x [B,D]`` → ``[B,B]`` (diagonal = 1e-6)."""
    sq = tf.reduce_sum(tf.square(x), axis=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * tf.matmul(x, x, transpose_b=True)
    return tf.sqrt(tf.maximum(d2, 1e-12))


def rkd_distance_potential(x, include_diagonal=True):
    """ψ_D = d / (μ + 1e-8). ``include_diagonal`` (II-KD code): μ = mean of all B² entries;
    else (RepDistiller) μ = mean over i≠j and the diagonal is set to 0."""
    d = _pairwise_distance(x)
    if include_diagonal:
        mu = tf.reduce_mean(d)
    else:
        b = tf.shape(d)[0]
        off = 1.0 - tf.eye(b, dtype=d.dtype)
        d = d * off
        mu = tf.reduce_sum(d) / tf.maximum(tf.reduce_sum(off), 1.0)
    return d / (mu + 1e-8)


def rkd_angle_potential(x):
    """ψ_A[i,j,k] = e_ij · e_ik with e_ij = l2n(x_j − x_i); ``x [B,D]`` → ``[B,B,B]``."""
    e = l2n(x[None, :, :] - x[:, None, :], axis=2)  # [i, j] = x_j − x_i
    return tf.matmul(e, e, transpose_b=True)


def rkd_loss(x_s, x_t, w_dist=50.0, w_angle=100.0, normalize=True, include_diagonal=True):
    """RKD on ``[B,D]`` embeddings. II-KD (default): rows L2-normalised, weights 50/100, diagonal
    in the distance mean. RepDistiller-style: ``normalize=False, include_diagonal=False``, 25/50.
    Returns ``(total, L_D, L_A)``; Huber δ=1, mean over entries."""
    x_s = tf.cast(x_s, tf.float32)
    x_t = tf.stop_gradient(tf.cast(x_t, tf.float32))
    if normalize:
        x_s, x_t = l2n(x_s), l2n(x_t)
    ld = huber(rkd_distance_potential(x_s, include_diagonal), rkd_distance_potential(x_t, include_diagonal))
    la = huber(rkd_angle_potential(x_s), rkd_angle_potential(x_t))
    return w_dist * ld + w_angle * la, ld, la


def kdsvd_loss(v_s, v_t):
    """KD-SVD relation loss. ``v_s, v_t``: lists over taps of ``[B, C_l]`` (aligned student /
    canonical teacher vectors). For consecutive taps ``R_l[b,a,a′] = exp(−(v_l[b,a]−v_{l−1}[b,a′])²/8)``;
    ``L = Σ_l Σ_{b,a,a′} (R_l^S − sg R_l^T)²`` with non-finite terms → 0. A SUM (scales with B)."""
    total = tf.constant(0.0)
    for l in range(1, len(v_s)):
        rs = tf.exp(-tf.square(v_s[l][:, :, None] - v_s[l - 1][:, None, :]) / 8.0)
        rt = tf.exp(-tf.square(v_t[l][:, :, None] - v_t[l - 1][:, None, :]) / 8.0)
        sq = tf.square(rs - tf.stop_gradient(rt))
        sq = tf.where(tf.math.is_finite(sq), sq, tf.zeros_like(sq))
        total = total + tf.reduce_sum(sq)
    return total


def decompose(s_taps, t_taps, k_student=4):
    """Teacher top-1 (no gradient, canonical sign) and aligned student vectors per tap, ``[B,C_l]``.
    One decomposition per tap and side; shared by KD-SVD and MHGD."""
    v_t = [_svd.teacher_vector(t) for t in t_taps]
    v_s = [_svd.student_vector(s, vt, k_student) for s, vt in zip(s_taps, v_t)]
    return v_s, v_t


# --------------------------------------------------------------------------- loss objects
class SoftKD:
    """Hinton soft-label KD on logits (see :func:`soft_kd_loss`). Terms: ``soft``."""

    terms = ("soft",)
    uses_taps = False

    def __init__(self, temperature=3.0, t2_scale=False, **_):
        self.temperature, self.t2_scale = float(temperature), bool(t2_scale)

    def __call__(self, s_outs, t_outs):
        v = soft_kd_loss(s_outs[-1], t_outs[-1], self.temperature, self.t2_scale)
        return {"soft": v, "kd": v}


class DML:
    """Deep mutual learning (see :func:`dml_loss`); ``t_outs`` come from the trainable PEER (a
    randomly initialised copy of the student's architecture trained alongside by the Distiller),
    not from a pre-trained teacher — as in the released baseline. Terms: ``dml``."""

    terms = ("dml",)
    uses_taps = False

    def __init__(self, **_):
        pass

    def __call__(self, s_outs, t_outs):
        v = dml_loss(s_outs[-1], t_outs[-1])
        return {"dml": v, "kd": v}


class RKD:
    """Relational KD. ``variant="iikd"`` (default; II-KD code): on L2-normalised logits, 50/100,
    diagonal in the distance mean. ``variant="standard"`` (RepDistiller): on the globally
    average-pooled last tap, 25/50, diagonal excluded, no normalisation. Terms: ``rkd``."""

    terms = ("rkd",)

    def __init__(self, variant="iikd", **_):
        if variant not in ("iikd", "standard"):
            raise ConfigError(f"rkd variant {variant!r} is unknown; allowed: iikd, standard")
        self.variant = variant
        self.uses_taps = variant == "standard"

    def embed(self, outs):
        if self.variant == "iikd":
            return outs[-1]
        last = outs[-2]
        return tf.reduce_mean(last, axis=[1, 2]) if last.shape.rank == 4 else last

    def __call__(self, s_outs, t_outs):
        if self.variant == "iikd":
            v, _, _ = rkd_loss(self.embed(s_outs), self.embed(t_outs), 50.0, 100.0, True, True)
        else:
            v, _, _ = rkd_loss(self.embed(s_outs), self.embed(t_outs), 25.0, 50.0, False, False)
        return {"rkd": v, "kd": v}


class KDSVD:
    """KD-SVD inter-relation loss (docs/KD.md §5; :func:`kdsvd_loss`). Terms: ``svd``."""

    terms = ("svd",)
    uses_taps = True

    def __init__(self, **_):
        pass

    def __call__(self, s_outs, t_outs, vecs=None):
        v_s, v_t = vecs if vecs is not None else decompose(s_outs[:-1], t_outs[:-1])
        v = kdsvd_loss(v_s, v_t)
        return {"svd": v, "kd": v}


#: TF1 ``tf.contrib.layers.variance_scaling_initializer()`` defaults (factor 2, FAN_IN, normal):
#: a normal truncated at ±2σ with σ = sqrt(1.3·factor/fan_in); the 1.3 compensates the truncation
#: (the drawn values then have std ≈ sqrt(2/fan_in), He et al.).
HEAD_INIT_FACTOR = 2.0
TRUNCATION_COMPENSATION = 1.3


def released_head_initializer(fan_in: int, seed: int):
    """Kernel initialiser of the MHGD heads as role-kd builds them (docs/KD.md §6): its attention heads
    are created inside ``ResNet_arg_scope``, whose ``fully_connected`` default is
    ``variance_scaling_initializer()`` — truncated normal (re-drawn beyond 2σ, as Keras'
    ``TruncatedNormal``), σ = sqrt(1.3·2/fan_in). ``fan_in``: input width of the dense kernel."""
    stddev = float(np.sqrt(TRUNCATION_COMPENSATION * HEAD_INIT_FACTOR / int(fan_in)))
    return keras.initializers.TruncatedNormal(mean=0.0, stddev=stddev, seed=int(seed))


@keras.saving.register_keras_serializable(package="rolekd_tf")
class MHGD(keras.layers.Layer):
    """Multi-head graph distillation (docs/KD.md §6).

    For each consecutive tap pair (l−1, l) with singular vectors ``P = v_l [B,C_l]`` (sender) and
    ``Q = v_{l−1} [B,C_{l−1}]`` (receiver): ``S = BN(P W_s)``, ``R = BN(Q W_r)``, Dense without bias,
    width ``D2·H`` with ``D2 = ⌊(C_l + C_{l−1})/2⌋`` laid out ``(D2, H)`` head-fastest (column
    ``d·H + h``). ``G[h] = tanh(S_h R_hᵀ) ∈ R^{B×B}`` and
    ``L = Σ_pairs Σ_h Σ_rows KL(softmax(G^S) ‖ softmax(G^T))`` (softmax over the receiver axis;
    KL with the STUDENT distribution first, as ``kld_loss(G_S, G_T)`` in the released code).

    Heads are frozen (``trainable=False``) and their BN runs in inference mode. Released code: random
    heads, BN at initial statistics (``x/√(1+1e-3)``), kernels from :func:`released_head_initializer`
    (He-scaled truncated normal, not Glorot: at CIFAR ResNet widths this makes the initial
    attention logits G several times larger, and so the whole MHGD term stronger). Original MHGD: call :meth:`pretrain_heads`
    first (teacher-only self-supervised task). BN: ``center=True, scale=False, eps=1e-3``.
    """

    terms = ("mhgd",)
    uses_taps = True

    def __init__(self, channels, heads=4, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.channels = [int(c) for c in channels]
        self.heads = int(heads)
        self.seed = int(seed)
        self.senders, self.receivers, self.s_bns, self.r_bns, self.dims = [], [], [], [], []
        for i in range(1, len(self.channels)):
            c_prev, c = self.channels[i - 1], self.channels[i]
            d2 = (c + c_prev) // 2
            self.dims.append(d2)
            seed = self.seed * 1000 + 10 * i
            sd = keras.layers.Dense(d2 * self.heads, use_bias=False, name=f"sender_{i}",
                                    kernel_initializer=released_head_initializer(c, seed))
            rd = keras.layers.Dense(d2 * self.heads, use_bias=False, name=f"receiver_{i}",
                                    kernel_initializer=released_head_initializer(c_prev, seed + 1))
            sb = keras.layers.BatchNormalization(epsilon=1e-3, momentum=0.999, scale=False, name=f"sender_bn_{i}")
            rb = keras.layers.BatchNormalization(epsilon=1e-3, momentum=0.999, scale=False, name=f"receiver_bn_{i}")
            sd.build((None, c)); rd.build((None, c_prev)); sb.build((None, d2 * self.heads)); rb.build((None, d2 * self.heads))  # noqa: E702
            self.senders.append(sd); self.receivers.append(rd); self.s_bns.append(sb); self.r_bns.append(rb)  # noqa: E702
        self._estimators = None
        self.trainable = False
        self.built = True

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "heads": self.heads, "seed": self.seed}

    def graph(self, pair, p, q, training=False):
        """Attention logits before tanh, ``[H, B, B]``: ``G[h] = S_h R_hᵀ`` for pair index ``pair``
        (taps ``pair``→``pair+1``, 0-based); ``p = v_l [B,C_l]``, ``q = v_{l−1} [B,C_{l−1}]``."""
        d2, h = self.dims[pair], self.heads
        s = self.s_bns[pair](self.senders[pair](p), training=training)
        r = self.r_bns[pair](self.receivers[pair](q), training=training)
        s = tf.transpose(tf.reshape(s, [-1, d2, h]), [2, 0, 1])  # [H, B, D2]
        r = tf.transpose(tf.reshape(r, [-1, d2, h]), [2, 0, 1])
        return tf.matmul(s, r, transpose_b=True)

    def from_vectors(self, v_s, v_t):
        """The loss from per-tap vectors (lists of ``[B,C_l]``)."""
        total = tf.constant(0.0)
        for i in range(1, len(v_s)):
            g_s = tf.tanh(self.graph(i - 1, v_s[i], v_s[i - 1]))
            g_t = tf.stop_gradient(tf.tanh(self.graph(i - 1, v_t[i], v_t[i - 1])))
            total = total + tf.reduce_sum(kl_from_logits(g_s, g_t))
        return total

    def __call__(self, s_outs, t_outs, vecs=None):  # noqa: D102  (not Layer.call: plain dict out)
        v_s, v_t = vecs if vecs is not None else decompose(s_outs[:-1], t_outs[:-1])
        v = self.from_vectors(v_s, v_t)
        return {"mhgd": v, "kd": v}

    # ------------------------------------------------------------------ original-MHGD pretraining
    def _build_estimators(self):
        rng = self.seed * 1000 + 500
        est = []
        for i in range(1, len(self.channels)):
            c_prev, c = self.channels[i - 1], self.channels[i]
            d = (c + c_prev) // 2
            fc0 = keras.layers.Dense(d, kernel_initializer=released_head_initializer(c_prev, rng + 3 * i))
            bn0 = keras.layers.BatchNormalization(epsilon=1e-3, momentum=0.999, scale=False)
            fc1 = keras.layers.Dense(c, kernel_initializer=released_head_initializer(d * self.heads, rng + 3 * i + 1))
            fc0.build((None, c_prev)); bn0.build((None, d)); fc1.build((None, d * self.heads))  # noqa: E702
            est.append((fc0, bn0, fc1))
        return est

    def pretrain_heads(self, teacher_feature_fn, dataset, epochs, *, steps_per_epoch=None,
                       learning_rate=1e-3, seed=None):
        """Original MHGD head pre-training on the teacher alone, then freeze (docs/KD.md §6).

        Task: from attention ``softmax(G_T)`` (random head-drop mask per head and sample) over the
        receiver vectors ``v_{l−1}``, an estimator (Dense+BN+ReLU, aggregate, Dense, l2n) predicts
        ``v_l``; loss ``mean(1 − cos) + 5e-4·Σ‖kernel‖²``, Adam. BN of the heads trains here.

        Args:
          teacher_feature_fn: ``x -> list of tap tensors`` (taps only, teacher in inference mode).
          dataset: iterable of ``(x, y)`` or ``x`` batches. epochs: passes (``steps_per_epoch`` caps
            each pass; required for infinite datasets).
        Returns: list of mean losses per epoch.
        """
        if epochs <= 0:
            return []
        if self._estimators is None:
            self._estimators = self._build_estimators()
        self.trainable = True
        head_layers = self.senders + self.receivers + self.s_bns + self.r_bns
        est_layers = [l for t in self._estimators for l in t]
        variables = [v for l in head_layers + est_layers for v in l.trainable_weights]
        kernels = [v for v in variables if "kernel" in v.path]
        opt = keras.optimizers.Adam(learning_rate)
        opt.build(variables)
        seed0 = self.seed if seed is None else int(seed)

        @tf.function
        def step(x, step_seed):
            taps = teacher_feature_fn(x)
            v_t = [_svd.teacher_vector(t) for t in taps]
            with tf.GradientTape() as tape:
                loss = tf.constant(0.0)
                for i in range(1, len(v_t)):
                    fc0, bn0, fc1 = self._estimators[i - 1]
                    g = tf.nn.softmax(self.graph(i - 1, v_t[i], v_t[i - 1], training=True), axis=-1)
                    b = tf.shape(g)[1]
                    noise = tf.random.stateless_normal([self.heads, b, 1], seed=tf.stack([step_seed, i]))
                    g = g * tf.cast(noise - tf.reduce_mean(noise, 0, keepdims=True) > 0, g.dtype)
                    xq = tf.nn.relu(bn0(fc0(v_t[i - 1]), training=True))  # [B, D]
                    agg = tf.matmul(g, tf.broadcast_to(xq[None], [self.heads, b, xq.shape[-1]]))  # [H,B,D]
                    agg = tf.reshape(tf.transpose(agg, [1, 0, 2]), [b, -1])
                    pred = l2n(fc1(agg))
                    loss = loss + tf.reduce_mean(1.0 - tf.reduce_sum(pred * v_t[i], -1))
                total = loss + 5e-4 * tf.add_n([tf.reduce_sum(tf.square(k)) for k in kernels])
            grads = tape.gradient(total, variables)
            opt.apply(grads, variables)
            return loss

        history, counter = [], 0
        for _ in range(int(epochs)):
            losses = []
            for n, batch in enumerate(dataset):
                if steps_per_epoch is not None and n >= steps_per_epoch:
                    break
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                losses.append(float(step(x, tf.constant(seed0 * 7919 + counter, tf.int32))))
                counter += 1
            history.append(float(np.mean(losses)) if losses else float("nan"))
        self.trainable = False
        return history


class IIKD:
    """II-KD of the released code: ``mhgd + rkd + svd`` (weights 1, docs/KD.md §7). The teacher and
    student decompositions are computed ONCE per call and shared by KD-SVD and MHGD.
    Terms: ``mhgd``, ``rkd``, ``svd``."""

    terms = ("mhgd", "rkd", "svd")
    uses_taps = True

    def __init__(self, channels, heads=4, seed=0, rkd_variant="iikd", **_):
        self.mhgd = MHGD(channels, heads=heads, seed=seed, name="mhgd")
        self.rkd = RKD(rkd_variant)
        self.svd = KDSVD()

    def __call__(self, s_outs, t_outs):
        vecs = decompose(s_outs[:-1], t_outs[:-1])
        out = {
            "mhgd": self.mhgd(s_outs, t_outs, vecs)["mhgd"],
            "rkd": self.rkd(s_outs, t_outs)["rkd"],
            "svd": self.svd(s_outs, t_outs, vecs)["svd"],
        }
        out["kd"] = out["mhgd"] + out["rkd"] + out["svd"]
        return out


LOSSES = {"soft": SoftKD, "dml": DML, "rkd": RKD, "svd": KDSVD, "mhgd": MHGD, "ii": IIKD}


def get_loss(name: str):
    """The loss class registered as ``name``; unknown → :class:`ConfigError` listing the names."""
    try:
        return LOSSES[name]
    except (KeyError, TypeError):
        raise ConfigError(
            f"unknown KD loss {name!r}; registered: {', '.join(sorted(LOSSES))} (or 'none' for no KD)"
        ) from None
