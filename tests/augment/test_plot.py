"""Schedule plots (rolekd_tf.augment.plot)."""
from __future__ import annotations

import numpy as np
import pytest

from rolekd_tf.augment.plot import plot_schedule, schedule_op_stats
from rolekd_tf.augment.policy import OP_ORDER, Policy, Schedule
from rolekd_tf.errors import ScheduleError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _schedule() -> Schedule:
    a = [0] * 60
    a[0], a[1] = 10, 9          # Rotate copy A: p=1.0, L=9
    a[30], a[31] = 0, 3         # Rotate copy B: p=0,   L=3
    b = [0] * 60
    b[26], b[27] = 4, 2         # Cutout copy A: p=0.4, L=2
    b[56], b[57] = 6, 6         # Cutout copy B: p=0.6, L=6
    b[28] = 10                  # Contrast copy A: p=1.0
    return Schedule.from_segments([(Policy.zeros(), 2), (a, 3), (b, 5)])


def test_op_stats_independent_numpy():
    s = _schedule()
    st = schedule_op_stats(s)
    assert st.op_names == OP_ORDER
    assert st.prob.shape == st.prob_norm.shape == st.magnitude.shape == (10, 15)
    # independent recomputation: average the copies, normalise by the largest per-epoch sum
    arr = s.as_array()
    prob = np.stack([(arr[:, 2 * k] + arr[:, 30 + 2 * k]) / 20.0 for k in range(15)], axis=1)
    mag = np.stack([(arr[:, 2 * k + 1] + arr[:, 31 + 2 * k]) / 2.0 for k in range(15)], axis=1)
    norm = prob.sum(axis=1).max()
    assert norm == pytest.approx(1.0)          # epoch 5..9: Cutout 0.5 + Contrast 0.5
    np.testing.assert_allclose(st.prob, prob)
    np.testing.assert_allclose(st.prob_norm, prob / norm)
    np.testing.assert_allclose(st.magnitude, mag)
    assert st.prob[2, 0] == pytest.approx(0.5) and st.magnitude[2, 0] == pytest.approx(6.0)
    assert st.prob_norm.sum(axis=1).max() == pytest.approx(1.0)
    # scaling all probabilities down changes the raw numbers, not the normalised maximum
    half = Schedule([Policy([v // 2 if i % 2 == 0 else v for i, v in enumerate(p)]) for p in s])
    assert schedule_op_stats(half).prob_norm.sum(axis=1).max() == pytest.approx(1.0)
    zero = schedule_op_stats(Schedule.constant(Policy.zeros(), 4))
    assert zero.norm == 0.0 and not zero.prob_norm.any()
    with pytest.raises(ScheduleError):
        schedule_op_stats([Policy.zeros()])


def test_plot_writes_png(tmp_path):
    path = tmp_path / "fig" / "sched.png"
    plot_schedule(_schedule(), path, title="test schedule")
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 10_000
    assert sorted(p.name for p in path.parent.iterdir()) == ["sched.png"]  # atomic, no leftovers
    # all-zero schedules plot too
    plot_schedule(Schedule.constant(Policy.zeros(), 3), tmp_path / "zero.png")
    assert (tmp_path / "zero.png").read_bytes()[:8] == PNG_MAGIC
