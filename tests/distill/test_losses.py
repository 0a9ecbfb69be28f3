"""Each KD loss against an independent NumPy implementation of docs/KD.md's formulas."""
import numpy as np
import pytest
import tensorflow as tf

from rolekd_tf.distill import losses as L
from rolekd_tf.errors import ConfigError

RNG = np.random.default_rng(0)


# ----------------------------------------------------------------- NumPy references
def np_log_softmax(z, axis=-1):
    z = z - z.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def np_kl(p_logits, q_logits, axis=-1):
    lp, lq = np_log_softmax(p_logits, axis), np_log_softmax(q_logits, axis)
    return (np.exp(lp) * (lp - lq)).sum(axis=axis)


def np_huber(a, b):
    d = np.abs(a - b)
    return np.where(d <= 1, 0.5 * d * d, d - 0.5).mean()


def np_rkd(xs, xt, wd, wa, normalize, diag):
    def norm(x):
        return x / np.sqrt(np.maximum((x * x).sum(-1, keepdims=True), 1e-12))

    def dist(x):
        b = len(x)
        d = np.sqrt(np.maximum(((x[:, None] - x[None]) ** 2).sum(-1), 1e-12))
        if diag:
            return d / (d.mean() + 1e-8)
        d = d * (1 - np.eye(b))
        return d / (d.sum() / (b * b - b) + 1e-8)

    def angle(x):
        e = norm(x[None, :, :] - x[:, None, :])  # e[i, j] = x_j - x_i
        return np.einsum("ijd,ikd->ijk", e, e)

    if normalize:
        xs, xt = norm(xs), norm(xt)
    return wd * np_huber(dist(xs), dist(xt)) + wa * np_huber(angle(xs), angle(xt))


def np_top_vectors(f, k):
    b = f.shape[0]
    x = f.reshape(b, -1, f.shape[-1]).astype(np.float64)
    out = []
    for xb in x:
        _, _, vh = np.linalg.svd(xb, full_matrices=False)
        out.append(vh[:k].T)
    return np.stack(out)  # [B, C, k]


def np_teacher_vec(f):
    v = np_top_vectors(f, 1)[:, :, 0]
    piv = v[np.arange(len(v)), np.abs(v).argmax(1)]
    return v * np.where(piv < 0, -1, 1)[:, None]


def np_student_vec(f, vt, k=4):
    vs = np_top_vectors(f, k)
    cos = np.einsum("bck,bc->bk", vs, vt)
    idx = np.abs(cos).argmax(1)
    chosen = vs[np.arange(len(vs)), :, idx]
    return chosen * np.where(cos[np.arange(len(vs)), idx] < 0, -1, 1)[:, None]


def np_kdsvd(vs, vt):
    tot = 0.0
    for l in range(1, len(vs)):
        rs = np.exp(-((vs[l][:, :, None] - vs[l - 1][:, None, :]) ** 2) / 8)
        rt = np.exp(-((vt[l][:, :, None] - vt[l - 1][:, None, :]) ** 2) / 8)
        tot += ((rs - rt) ** 2).sum()
    return tot


def np_mhgd(layer, vs, vt):
    h = layer.heads
    bn = 1.0 / np.sqrt(1.0 + 1e-3)  # BN at initial statistics
    tot = 0.0
    for i in range(1, len(vs)):
        ws = layer.senders[i - 1].kernel.numpy()
        wr = layer.receivers[i - 1].kernel.numpy()
        d2 = layer.dims[i - 1]

        def graph(p, q):
            s = (p @ ws * bn).reshape(len(p), d2, h)  # column d*H + h
            r = (q @ wr * bn).reshape(len(q), d2, h)
            return np.tanh(np.einsum("bdh,cdh->hbc", s, r))

        gs, gt = graph(vs[i], vs[i - 1]), graph(vt[i], vt[i - 1])
        tot += np_kl(gs, gt).sum()  # KL(student || teacher) over the receiver axis
    return tot


def feats(b=6, shapes=((8, 8, 4), (4, 4, 6), (2, 2, 8)), seed=0):
    rng = np.random.default_rng(seed)
    return [np.maximum(rng.normal(size=(b, *s)), 0).astype("float32") + 0.01 for s in shapes]


# ----------------------------------------------------------------- tests
def test_registry_and_unknown_name():
    assert set(L.LOSSES) == {"soft", "dml", "rkd", "svd", "mhgd", "ii"}
    with pytest.raises(ConfigError, match="registered: dml, ii, mhgd, rkd, soft, svd"):
        L.get_loss("fitnet")


@pytest.mark.parametrize("t2", [False, True])
def test_soft_matches_numpy(t2):
    zs, zt = RNG.normal(size=(7, 5)), RNG.normal(size=(7, 5)) * 3
    ref = np_kl(zt / 3, zs / 3).mean() * (9 if t2 else 1)
    out = L.SoftKD(temperature=3.0, t2_scale=t2)([tf.constant(zs, tf.float32)], [tf.constant(zt, tf.float32)])
    np.testing.assert_allclose(out["soft"].numpy(), ref, rtol=1e-5)
    assert out["kd"] is out["soft"]


def test_dml_matches_numpy_and_symmetric():
    zs, zp = RNG.normal(size=(7, 5)), RNG.normal(size=(7, 5))
    ref = 0.5 * (np_kl(zp, zs) + np_kl(zs, zp)).mean()
    a = L.dml_loss(tf.constant(zs, tf.float32), tf.constant(zp, tf.float32)).numpy()
    b = L.dml_loss(tf.constant(zp, tf.float32), tf.constant(zs, tf.float32)).numpy()
    np.testing.assert_allclose([a, b], [ref, ref], rtol=1e-5)


def test_rkd_iikd_matches_numpy_diagonal_in_mean():
    zs, zt = RNG.normal(size=(6, 5)), RNG.normal(size=(6, 5))
    ref = np_rkd(zs, zt, 50, 100, True, True)
    other = np_rkd(zs, zt, 50, 100, True, False)
    out = L.RKD()([tf.constant(zs, tf.float32)], [tf.constant(zt, tf.float32)])["rkd"].numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-4)
    assert abs(ref - other) > 1e-3 * abs(ref)  # the diagonal choice is actually visible


def test_rkd_standard_variant_on_pooled_features():
    fs, ft = feats(seed=1), feats(seed=2)
    ps, pt = fs[-1].mean(axis=(1, 2)), ft[-1].mean(axis=(1, 2))
    ref = np_rkd(ps.astype(np.float64), pt.astype(np.float64), 25, 50, False, False)
    outs_s = [tf.constant(f) for f in fs] + [tf.zeros((6, 5))]
    outs_t = [tf.constant(f) for f in ft] + [tf.zeros((6, 5))]
    out = L.RKD("standard")(outs_s, outs_t)["rkd"].numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-4)


def test_decompose_alignment_and_sign_match_numpy():
    fs, ft = feats(seed=3), feats(seed=4)
    v_s, v_t = L.decompose([tf.constant(f) for f in fs], [tf.constant(f) for f in ft])
    for f_s, f_t, a, b in zip(fs, ft, v_s, v_t):
        vt = np_teacher_vec(f_t)
        np.testing.assert_allclose(b.numpy(), vt, atol=2e-4)
        np.testing.assert_allclose(a.numpy(), np_student_vec(f_s, vt), atol=2e-4)
    # flipping the sign of the student map's vectors is irrelevant: the alignment flips it back
    v_s2, _ = L.decompose([tf.constant(-f) for f in fs], [tf.constant(f) for f in ft])
    for a, b in zip(v_s, v_s2):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=2e-4)


def test_alignment_picks_largest_abs_cos_and_flips():
    from rolekd_tf.distill.svd import align_to_teacher

    vs = np.zeros((1, 4, 4), np.float32)
    vs[0, :, 0] = [1, 0, 0, 0]
    vs[0, :, 1] = [0, -1, 0, 0]  # best match, wrong sign
    vs[0, :, 2] = [0, 0, 1, 0]
    vs[0, :, 3] = [0, 0, 0, 1]
    vt = np.array([[0.1, 0.9, 0.1, 0.0]], np.float32)
    out = align_to_teacher(tf.constant(vs), tf.constant(vt)).numpy()
    np.testing.assert_allclose(out, [[0, 1, 0, 0]])


def test_kdsvd_matches_numpy():
    fs, ft = feats(seed=5), feats(seed=6)
    vt = [np_teacher_vec(f) for f in ft]
    vs = [np_student_vec(f, v) for f, v in zip(fs, vt)]
    out = L.KDSVD()([tf.constant(f) for f in fs] + [None], [tf.constant(f) for f in ft] + [None])
    np.testing.assert_allclose(out["svd"].numpy(), np_kdsvd(vs, vt), rtol=2e-3)


def test_mhgd_matches_numpy_kl_direction_and_layout():
    fs, ft = feats(seed=7), feats(seed=8)
    layer = L.MHGD([4, 6, 8], heads=4, seed=3)
    vt = [np_teacher_vec(f) for f in ft]
    vs = [np_student_vec(f, v) for f, v in zip(fs, vt)]
    out = layer([tf.constant(f) for f in fs] + [None], [tf.constant(f) for f in ft] + [None])["mhgd"].numpy()
    np.testing.assert_allclose(out, np_mhgd(layer, vs, vt), rtol=2e-3)
    # the reverse KL direction is a different number (guards against swapping the arguments)
    rev = np_mhgd(layer, vt, vs)
    assert abs(rev - out) > 1e-3 * abs(out)
    assert layer.dims == [5, 7] and not layer.trainable_weights


def test_ii_is_sum_of_terms():
    fs, ft = feats(seed=9), feats(seed=10)
    zs, zt = RNG.normal(size=(6, 5)).astype("float32"), RNG.normal(size=(6, 5)).astype("float32")
    ii = L.IIKD([4, 6, 8], heads=4, seed=0)
    s = [tf.constant(f) for f in fs] + [tf.constant(zs)]
    t = [tf.constant(f) for f in ft] + [tf.constant(zt)]
    out = ii(s, t)
    assert set(out) == {"mhgd", "rkd", "svd", "kd"}
    np.testing.assert_allclose(out["kd"].numpy(), (out["mhgd"] + out["rkd"] + out["svd"]).numpy(), rtol=1e-6)
    np.testing.assert_allclose(out["svd"].numpy(), L.KDSVD()(s, t)["svd"].numpy(), rtol=1e-5)
    np.testing.assert_allclose(out["mhgd"].numpy(), ii.mhgd(s, t)["mhgd"].numpy(), rtol=1e-5)


def test_losses_minimal_when_student_equals_teacher():
    fs = feats(seed=11)
    z = RNG.normal(size=(6, 5)).astype("float32")
    s = [tf.constant(f) for f in fs] + [tf.constant(z)]
    out = L.IIKD([4, 6, 8])(s, s)
    for k in ("mhgd", "rkd", "svd"):
        assert abs(out[k].numpy()) < 1e-5, (k, out[k])
    assert abs(L.SoftKD()(s, s)["soft"].numpy()) < 1e-6
    assert abs(L.dml_loss(s[-1], s[-1]).numpy()) < 1e-6
    assert abs(L.RKD("standard")(s, s)["rkd"].numpy()) < 1e-6


# ----------------------------------------------------------------- MHGD head initialisation
#: std of a unit normal truncated (and re-drawn) beyond ±2: sqrt(1 − 4φ(2)/(2Φ(2) − 1))
_TRUNC2_STD = float(np.sqrt(1 - 4 * np.exp(-2) / np.sqrt(2 * np.pi) / 0.9544997361036416))


def _np_truncated_normal(rng, shape, stddev):
    """TF1 ``truncated_normal``: N(0, stddev²), values beyond 2·stddev re-drawn."""
    out = rng.normal(size=shape)
    bad = np.abs(out) > 2
    while bad.any():
        out[bad] = rng.normal(size=int(bad.sum()))
        bad = np.abs(out) > 2
    return out * stddev


def _np_initial_logits(rng, p, q, heads, *, glorot=False):
    """NumPy reference of the frozen random heads' attention logits G = S·Rᵀ [H,B,B]: kernels drawn
    as role-kd's ``variance_scaling_initializer()`` (truncated normal, σ = sqrt(1.3·2/fan_in)) or,
    for comparison, Glorot-uniform; BN at initial statistics (÷√(1 + 1e-3))."""
    d2 = (p.shape[1] + q.shape[1]) // 2

    def kernel(fan_in):
        if glorot:
            lim = np.sqrt(6 / (fan_in + d2 * heads))
            return rng.uniform(-lim, lim, size=(fan_in, d2 * heads))
        return _np_truncated_normal(rng, (fan_in, d2 * heads), np.sqrt(1.3 * 2 / fan_in))

    bn = 1 / np.sqrt(1 + 1e-3)
    s = (p @ kernel(p.shape[1]) * bn).reshape(len(p), d2, heads)
    r = (q @ kernel(q.shape[1]) * bn).reshape(len(q), d2, heads)
    return np.einsum("bdh,cdh->hbc", s, r)


def _unit_rows(rng, b, c):
    x = rng.normal(size=(b, c))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_mhgd_head_kernels_are_released_variance_scaling():
    layer = L.MHGD([16, 32, 64], heads=4, seed=3)
    for pair, (c_prev, c) in enumerate(((16, 32), (32, 64))):
        for dense, fan_in in ((layer.senders[pair], c), (layer.receivers[pair], c_prev)):
            w = dense.kernel.numpy()
            sigma = np.sqrt(1.3 * 2 / fan_in)  # tf.contrib variance_scaling_initializer() defaults
            assert np.abs(w).max() <= 2 * sigma * (1 + 1e-6)  # truncated at 2σ
            np.testing.assert_allclose(w.std(), sigma * _TRUNC2_STD, rtol=0.05)
            np.testing.assert_allclose(w.std(), np.sqrt(2 / fan_in), rtol=0.05)  # ≈ He (fan-in)
            assert abs(w.mean()) < 0.1 * sigma


def test_mhgd_initial_logit_scale_matches_numpy_reference_and_exceeds_glorot():
    """The std of the frozen heads' initial attention logits (on fixed random unit vectors, CIFAR
    ResNet widths 16/32/64, 4 heads) equals the NumPy reference of role-kd's initialisation and is
    several times the Glorot one (the strength of the whole MHGD term scales with it)."""
    rng = np.random.default_rng(7)
    b, heads, widths = 32, 4, [16, 32, 64]
    vecs = [_unit_rows(rng, b, c) for c in widths]
    ours = {0: [], 1: []}
    for seed in range(6):
        layer = L.MHGD(widths, heads=heads, seed=seed)
        for pair in (0, 1):
            ours[pair].append(layer.graph(pair, tf.constant(vecs[pair + 1]), tf.constant(vecs[pair])).numpy())
    for pair in (0, 1):
        p, q = vecs[pair + 1], vecs[pair]
        ref = np.concatenate([_np_initial_logits(rng, p, q, heads).ravel() for _ in range(40)])
        glo = np.concatenate([_np_initial_logits(rng, p, q, heads, glorot=True).ravel() for _ in range(40)])
        d2 = (p.shape[1] + q.shape[1]) // 2
        analytic = np.sqrt(d2) * (2.6 * _TRUNC2_STD**2) / np.sqrt(p.shape[1] * q.shape[1]) / (1 + 1e-3)
        np.testing.assert_allclose(ref.std(), analytic, rtol=0.05)
        got = np.concatenate([g.ravel() for g in ours[pair]]).std()
        np.testing.assert_allclose(got, ref.std(), rtol=0.15)
        assert got / glo.std() > 3.5, (pair, got, glo.std())
