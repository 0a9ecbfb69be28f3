"""Uninformative schedules (issue 20): the winner never exploited → summary flags + stderr warning
naming the setting; search.init=random gives a non-empty schedule then; the pipeline's guard."""
import json
from pathlib import Path

import numpy as np
import pytest

from rolekd_tf.search import oracle as om
from rolekd_tf.search.informative import check_schedule, schedule_is_informative, schedule_status
from rolekd_tf.search.run import finalize
from rolekd_tf.search.tuner import PBTTuner
from tests.search.fake_task import FakeTask

ROOT = Path(__file__).resolve().parents[2]
CFG = str(ROOT / "configs" / "quickstart.yaml")


class HurtingTask(FakeTask):
    """More augmentation → *lower* score (the small-scale regime of issue 20): a member that
    exploits gets an explored, stronger policy and falls behind, so the winner never exploits."""

    def with_seed(self, seed):
        return HurtingTask(self.total_epochs, seed=seed)

    def evaluate(self, model) -> float:
        done = model.trained[: model.epoch]
        return float(model.offset - done[:, 0::2].mean() / 10.0) if len(done) else model.offset


def _search(tmp_path, task_cls, *, init="zeros", population=4, ready_interval=3, epochs=6, seed=0):
    from rolekd_tf.config import load_config

    cfg = load_config(CFG, [f"search.population={population}", f"search.ready_interval={ready_interval}",
                            f"search.epochs={epochs}", f"search.init={init}", f"search.seed={seed}"])
    o = om.PBTOracle(population=population, ready_interval=ready_interval, epochs=epochs, seed=seed,
                     init=init)
    out = tmp_path / f"search-{init}-{task_cls.__name__}"
    PBTTuner(o, task_factory=lambda: task_cls(epochs), directory=str(out), project_name="pbt",
             log=False).search(verbose=0)
    summary = finalize(out, cfg, o, wall=0.0, segment_times=[], role="teacher")
    return out, o, summary


def test_never_exploited_winner_warns_zeros(tmp_path, capsys):
    out, o, s = _search(tmp_path, HurtingTask)
    best = o.best_member()
    assert o.pbt_state["lineage"], "exploits happened, just not in the winner's lineage"
    assert o.member_log(best) == [] and s["exploits_in_lineage"] == 0
    assert s["schedule_empty"] is True and s["schedule_unchanged"] is True
    assert s["schedule_informative"] is False and s["init"] == "zeros"
    from rolekd_tf.augment.policy import load_schedule

    arr = load_schedule(out / "schedule.json").as_array()
    assert arr.shape == (6, 60) and not arr.any()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: ") and str(out) in err[0]
    assert "all-zero" in err[0] and "search.init=random" in err[0] and "search.ready_interval=1" in err[0]
    assert "search.population" in err[0] and err[0][len("warning: "):] == s["warning"]
    st = schedule_status(out)
    assert st.empty and not st.informative and not schedule_is_informative(out)
    from rolekd_tf.search.run import print_summary

    print_summary(s)
    assert "all zero (see the warning)" in capsys.readouterr().out


def test_never_exploited_winner_init_random_is_nonempty(tmp_path, capsys):
    """The documented small-scale setting: with search.init=random the same never-exploited winner
    returns its (seeded, non-zero) start policy — a warning, but no longer an empty schedule."""
    from rolekd_tf.augment.policy import load_schedule
    from rolekd_tf.search.space import initial_policies

    out, o, s = _search(tmp_path, HurtingTask, init="random")
    best = o.best_member()
    assert o.member_log(best) == []
    start = initial_policies("random", 4, 0)[int(best)]
    arr = load_schedule(out / "schedule.json").as_array()
    assert arr.tolist() == [start] * 6 and arr.any()
    assert s["schedule_empty"] is False and s["schedule_unchanged"] is True and not s["schedule_informative"]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "start policy unchanged" in err[0]
    assert "search.init=random" not in err[0] and "search.ready_interval=1" in err[0]


def test_informative_search_no_warning(tmp_path, capsys):
    out, o, s = _search(tmp_path, FakeTask)  # augmentation helps: the winner has exploited
    assert s["exploits_in_lineage"] > 0
    assert s["schedule_informative"] is True and s["warning"] is None
    assert "warning" not in capsys.readouterr().err
    assert schedule_is_informative(out)


def test_check_schedule_independent_cases():
    z = np.zeros((4, 60), int)
    start = [1] + [0] * 59
    kw = dict(where="D", best_member="2", exploits=0, init="zeros", ready_interval=3, population=4)
    assert check_schedule(z, [0] * 60, **kw).empty
    v = check_schedule(np.tile(start, (4, 1)), start, **{**kw, "init": "random"})
    assert not v.empty and v.unchanged and "search.init" not in v.warning
    changed = np.tile(start, (4, 1))
    changed[2:, 4] = 3
    v = check_schedule(changed, start, **{**kw, "exploits": 1})
    assert v.informative and v.warning == ""
    v = check_schedule(z, [0] * 60, **{**kw, "ready_interval": 1})
    assert "ready_interval" not in v.warning and "search.init=random or a larger search.population (now 4)" in v.warning


def _fake_search_dir(d: Path, *, empty: bool, unchanged: bool) -> Path:
    d.mkdir(parents=True)
    (d / "summary.json").write_text(json.dumps({
        "schedule_empty": empty, "schedule_unchanged": unchanged,
        "schedule_informative": not (empty or unchanged),
        "warning": f"the search in {d} is uninformative" if (empty or unchanged) else None}))
    return d


def test_pipeline_guard(tmp_path, capsys):
    from rolekd_tf.pipeline import StepFailed, check_searched_schedule

    def step(row, search_dir):
        return {"kind": "train", "row": row, "cmd": ["python", "train.py", "--schedule",
                                                      str(search_dir / "schedule.json"), "--out", "x"]}

    empty = _fake_search_dir(tmp_path / "s-empty", empty=True, unchanged=True)
    with pytest.raises(StepFailed, match=r"stage_beta would repeat only_iikd: the search in .*s-empty"):
        check_searched_schedule(step("stage_beta", empty))
    with pytest.raises(StepFailed, match="stage_alpha would repeat vanilla_fp"):
        check_searched_schedule(step("stage_alpha", empty))
    try:
        check_searched_schedule(step("stage_beta", empty))
    except StepFailed as e:
        assert "\n" not in str(e)
    start = _fake_search_dir(tmp_path / "s-start", empty=False, unchanged=True)
    check_searched_schedule(step("stage_beta", start))  # runs, with a warning
    assert capsys.readouterr().err.startswith("warning: the search in")
    good = _fake_search_dir(tmp_path / "s-good", empty=False, unchanged=False)
    check_searched_schedule(step("stage_beta", good))
    check_searched_schedule({"kind": "train", "row": "only_iikd", "cmd": ["train.py"]})  # no schedule
    assert capsys.readouterr().err == ""
