"""Paper Table 4 / §5.6 full-precision teacher → student pairs with feature adapters.

Pairs: WRN-28-10 → WRN-16-2 / WRN-16-4 / PreResNet-56, PreResNet-164 → PreResNet-32 / -44,
PyramidNet-200-240 → PreResNet-44 / WRN-16-2. Every pair has three taps on each side (one per
stage, same resolutions) but different channel counts, so the tap-based losses (ii, mhgd, svd) need
``adapter=True`` (a 1×1 map of each student tap onto the teacher's width).

To stay fast, the training steps use shallow stand-ins with the **same tap widths** as the real
teacher (WRN-10-10 for WRN-28-10, PyramidNet-11-240-bottleneck for PyramidNet-200-240: both give
the real nets' 160/320/640 and 384/704/1024 channels) and the shallowest student of each family
(depth 8/10), on 8×8 inputs; PreResNet-164 itself is used (its bottleneck widths need depth ≥ 164).
The real pairs at real depth are built once (Distiller construction, no training).
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

import rolekd_tf  # noqa: F401
from rolekd_tf.distill import Distiller
from rolekd_tf.models import build_model, tap_layer_names

#: (real teacher, real student) → (teacher stand-in, student stand-in) with the same tap widths
PAIRS = {
    ("wrn-28-10", "wrn-16-2"): ("wrn-10-10", "wrn-10-2"),
    ("wrn-28-10", "wrn-16-4"): ("wrn-10-10", "wrn-10-4"),
    ("wrn-28-10", "preresnet56"): ("wrn-10-10", "preresnet8"),
    ("preresnet164", "preresnet32"): ("preresnet164", "preresnet8"),
    ("preresnet164", "preresnet44"): ("preresnet164", "preresnet8"),
    ("pyramidnet-200-240", "preresnet44"): ("pyramidnet-11-240-bottleneck", "preresnet8"),
    ("pyramidnet-200-240", "wrn-16-2"): ("pyramidnet-11-240-bottleneck", "wrn-10-2"),
}
KDS = ("ii", "mhgd", "svd", "rkd", "soft", "dml")


def _tap_widths(m):
    return [int(m.get_layer(n).output.shape[-1]) for n in tap_layer_names(m)]


def _step(teacher_name, student_name, kd, batch=8, size=8, classes=10):
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    t = build_model(teacher_name, num_classes=classes, input_shape=(size, size, 3))
    s = build_model(student_name, num_classes=classes, input_shape=(size, size, 3))
    d = Distiller(None if kd == "dml" else t, s, kd=kd, update="weighted_clip", adapter=True,
                  weight_decay=5e-4)
    d.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True), jit_compile=False)
    d.optimizer.build(d._train_var_list())
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(batch, size, size, 3)).astype(np.float32))
    y = tf.constant(rng.integers(0, classes, batch).astype(np.int32))
    before = [v.numpy().copy() for v in s.trainable_variables]
    logs = {k: float(np.asarray(v)) for k, v in d.train_step((x, y)).items()}
    assert all(np.isfinite(v) for v in logs.values()), logs
    assert any(not np.array_equal(b, v.numpy()) for b, v in zip(before, s.trainable_variables))
    return t, s, d, logs


def test_stand_ins_have_the_real_tap_widths():
    keras.backend.clear_session()
    # (PyramidNet-200-240 is checked in test_real_depth_pairs_build, which builds it anyway)
    for real, small in (("wrn-28-10", "wrn-10-10"), ("wrn-16-2", "wrn-10-2"), ("wrn-16-4", "wrn-10-4"),
                        ("preresnet44", "preresnet8"), ("preresnet56", "preresnet8")):
        a = build_model(real, num_classes=10, input_shape=(8, 8, 3))
        b = build_model(small, num_classes=10, input_shape=(8, 8, 3))
        assert _tap_widths(a) == _tap_widths(b), (real, small)


@pytest.mark.parametrize("pair", list(PAIRS), ids=lambda p: f"{p[0]}->{p[1]}")
def test_pair_ii_step_with_adapters(pair):
    t, s, d, logs = _step(*PAIRS[pair], "ii")
    tw, sw = _tap_widths(t), _tap_widths(s)
    # one adapter per student tap whose width differs, mapping it onto the teacher's width
    assert [tuple(a.kernel.shape) for a in d.adapters] == [(c, ct) for c, ct in zip(sw, tw) if c != ct]
    assert d.mhgd.channels == tw
    assert {"mhgd", "rkd", "svd", "kd"} <= set(logs) and logs["kd"] > 0


@pytest.mark.parametrize("kd", KDS)
def test_every_kd_loss_steps_on_the_pyramidnet_pair(kd):
    _, _, d, logs = _step("pyramidnet-11-240-bottleneck", "preresnet8", kd)
    uses_taps = kd in ("ii", "mhgd", "svd")
    assert (len(d.adapters) == 3) == uses_taps  # logits-only losses need no adapter
    assert kd == "dml" or logs["kd"] >= 0


@pytest.mark.slow
@pytest.mark.parametrize("kd", KDS)
@pytest.mark.parametrize("pair", list(PAIRS), ids=lambda p: f"{p[0]}->{p[1]}")
def test_every_pair_every_kd_loss(pair, kd):
    _step(*PAIRS[pair], kd)


def test_real_depth_pairs_build():
    """The real teacher and student at real depth (32×32 input): the Distiller builds with the
    adapters and MHGD heads sized for the real widths (no training)."""
    for teacher, student in (("pyramidnet-200-240", "preresnet44"), ("wrn-28-10", "wrn-16-2")):
        keras.backend.clear_session()
        t = build_model(teacher, num_classes=100)
        s = build_model(student, num_classes=100)
        d = Distiller(t, s, kd="ii", update="weighted_clip", adapter=True)
        tw, sw = _tap_widths(t), _tap_widths(s)
        assert [tuple(a.kernel.shape) for a in d.adapters] == list(zip(sw, tw))
        assert d.mhgd.dims == [(tw[0] + tw[1]) // 2, (tw[1] + tw[2]) // 2]
        assert not t.trainable
        small = {"pyramidnet-200-240": "pyramidnet-11-240-bottleneck"}.get(teacher)
        if small:
            assert _tap_widths(build_model(small, num_classes=100)) == tw == [384, 704, 1024]
