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


def _stacked_top(ax) -> float:
    """Highest point of the stacked probability areas drawn on ``ax``."""
    tops = [p.get_paths()[0].vertices[:, 1].max() for p in ax.collections if p.get_paths()]
    return max(tops) if tops else 0.0


def test_plot_compare_shared_scales(tmp_path):
    from rolekd_tf.augment.plot import plot_compare

    strong = _schedule()                                     # max per-epoch prob sum 1.0
    weak = [0] * 60
    weak[6] = 5                                              # TranslateY copy A p=0.5 → sum 0.25
    weak_s = Schedule.from_segments([(Policy.zeros(), 1), (weak, 5)])
    fig = plot_compare([strong, weak_s], ["A_T (teacher)", "A_S (student)"], tmp_path / "cmp.png")
    assert (tmp_path / "cmp.png").read_bytes()[:8] == PNG_MAGIC
    axes = fig.axes
    assert len(axes) == 4                                    # two columns: probability over magnitude
    titles = [a.get_title() for a in axes]
    assert titles[0].startswith("A_T (teacher)") and titles[1].startswith("A_S (student)")
    assert axes[0].get_ylim() == axes[1].get_ylim() and axes[2].get_ylim() == axes[3].get_ylim()
    # one normalisation for both: the strong column reaches 1, the weak one 0.25 / 1.0
    assert _stacked_top(axes[0]) == pytest.approx(1.0)
    assert _stacked_top(axes[1]) == pytest.approx(0.25)
    assert len(fig.legends) == 1 and len(fig.legends[0].get_texts()) == len(OP_ORDER)
    assert "A_T (teacher) vs A_S (student)" in fig._suptitle.get_text()
    # an all-zero schedule beside a real one
    fig = plot_compare([Schedule.constant(Policy.zeros(), 4), weak_s], ["A_T", "A_S"], tmp_path / "z.png")
    assert fig.axes[0].get_title().endswith("all zero") and _stacked_top(fig.axes[1]) == pytest.approx(1.0)


def _search_dir(path, role, schedule):
    import json

    path.mkdir()
    (path / "search.json").write_text(json.dumps({"role": role, "teacher": None}))
    schedule.save(path / "schedule.json")
    return path


def test_compare_command(tmp_path, capsys):
    from rolekd_tf.augment.__main__ import main

    t = _search_dir(tmp_path / "search-teacher", "teacher", _schedule())
    s = _search_dir(tmp_path / "search-student", "student", Schedule.constant(Policy.zeros(), 10))
    out = tmp_path / "fig.png"
    assert main(["compare", str(t), str(s), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG_MAGIC and len(out.read_bytes()) > 10_000
    said = capsys.readouterr().out
    assert "A_T (teacher search), search-teacher" in said and "A_S (student search), search-student" in said
    # bad input: one line on stderr, exit 2, nothing written
    for args in (["compare", str(t), str(tmp_path / "missing"), "--out", str(tmp_path / "x.png")],
                 ["compare", str(tmp_path), str(s), "--out", str(tmp_path / "y.png")]):
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and "no schedule.json" in err[0]
    (s / "schedule.json").write_text("{not json")
    assert main(["compare", str(t), str(s), "--out", str(tmp_path / "z.png")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "z.png").exists()
