"""II-KD on the real model zoo: ResNet-20 W2A2 student from a ResNet-20 FP teacher."""
import keras
import numpy as np
import pytest

from rolekd_tf.distill import Distiller, EpochTracker


@pytest.mark.slow
def test_resnet20_w2a2_ii_kd_fit_evaluate():
    from rolekd_tf.models import build_model, copy_trainable_weights

    teacher = build_model("resnet20", num_classes=10)
    student = build_model("resnet20", num_classes=10, w_bits=2, a_bits=2)
    copy_trainable_weights(teacher, student)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, 32).astype("int32")
    t_before = [w.copy() for w in teacher.get_weights()]
    d = Distiller(teacher, student, kd="ii", weight_decay=1e-5)
    d.compile(optimizer=keras.optimizers.Adam(1e-3, epsilon=1e-5), jit_compile=False)
    h = d.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[EpochTracker()])
    assert all(np.all(np.isfinite(v)) for v in h.history.values())
    assert {"mhgd", "rkd", "svd", "kd", "ce", "accuracy"} <= set(h.history)
    for a, b in zip(t_before, teacher.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert np.isfinite(d.evaluate(x, y, verbose=0, return_dict=True)["loss"])
