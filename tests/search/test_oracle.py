"""PBTOracle decisions driven directly (no training): quantiles, exploit sources, lineage,
reproducibility, state round trip, settings mismatch, generation barrier."""
import json
import math

import numpy as np
import pytest

from rolekd_tf.augment.policy import UPPER, read_lineage_rows
from rolekd_tf.errors import ConfigError
from rolekd_tf.search import lineage as lin
from rolekd_tf.search import oracle as om



def _assert_resumes_identically(a, b):
    """``b`` (a fresh oracle of ``a``'s directory) reloads ``a``'s state; both then run to the end
    with the same lineage and decisions."""
    b.reload()
    assert b.get_state()["pbt"] == a.get_state()["pbt"]
    run_all(a)
    run_all(b)
    assert a.pbt_state["lineage"] == b.pbt_state["lineage"]
    assert a.pbt_state["decisions"] == b.pbt_state["decisions"]

def make(tmp_path, name="p", **kw):
    args = dict(population=8, ready_interval=3, epochs=12, seed=3)
    args.update(kw)
    o = om.PBTOracle(**args)
    o._set_project_dir(str(tmp_path), name)
    return o


def score_of(hp):
    """Deterministic 'accuracy': more augmentation is better, plus a per-member offset."""
    pol = json.loads(hp[om.HP_POLICY])
    return float(np.mean(pol[0::2]) / 10 + 0.001 * hp[om.HP_MEMBER] + 0.01 * hp[om.HP_EPOCHS])


def run_one(o, tuner_id="tuner0", score=score_of, status="COMPLETED"):
    t = o.create_trial(tuner_id)
    if t.status != "RUNNING":
        return t
    if status == "COMPLETED":
        o.update_trial(t.trial_id, {"val_accuracy": score(t.hyperparameters.values)})
    t.status = status
    o.end_trial(t)
    return t


def run_all(o, **kw):
    trials = []
    while True:
        t = run_one(o, **kw)
        if t.status == "STOPPED":
            return trials
        trials.append(t)


@pytest.mark.parametrize("n,q,expect", [(16, 0.25, 4), (4, 0.25, 1), (2, 0.25, 1), (3, 0.5, 1),
                                        (16, 0.5, 8), (5, 0.25, 2), (7, 0.5, 3), (10, 0.2, 2)])
def test_quantile_size(n, q, expect):
    assert om.quantile_size(n, q) == expect
    assert om.quantile_size(n, q) == min(math.ceil(q * n), n // 2)


def test_rejects_bad_settings():
    with pytest.raises(ConfigError, match="population"):
        om.PBTOracle(population=1)
    with pytest.raises(ConfigError, match="ready_interval"):
        om.PBTOracle(population=4, ready_interval=5, epochs=4)


def test_generation_barrier_and_segments(tmp_path):
    o = make(tmp_path, population=3, ready_interval=5, epochs=12)
    ts = [o.create_trial(f"t{i}") for i in range(3)]
    assert [t.status for t in ts] == ["RUNNING"] * 3
    hp = [t.hyperparameters.values for t in ts]
    assert [h[om.HP_MEMBER] for h in hp] == [0, 1, 2]
    assert all(h[om.HP_INITIAL_EPOCH] == 0 and h[om.HP_EPOCHS] == 5 and h[om.HP_RESTORE] == "" for h in hp)
    assert json.loads(hp[0][om.HP_POLICY]) == [0] * 60
    # a 4th tuner must wait (IDLE) until the generation is complete
    assert o.create_trial("t3").status == "IDLE"
    for t in ts:
        o.update_trial(t.trial_id, {"val_accuracy": score_of(t.hyperparameters.values)})
        t.status = "COMPLETED"
        o.end_trial(t)
    trials = run_all(o)
    eps = sorted({(t.hyperparameters.values[om.HP_INITIAL_EPOCH], t.hyperparameters.values[om.HP_EPOCHS])
                  for t in trials})
    assert eps == [(5, 10), (10, 12)]  # last segment shorter
    assert o.finished and all(m["epoch"] == 12 for m in o.pbt_state["members"].values())
    assert len(o.end_order) == 9


def test_exploit_decisions_fixed_seed(tmp_path):
    o = make(tmp_path)
    trials = run_all(o)
    st = o.pbt_state
    n = om.quantile_size(8, 0.25)
    assert n == 2
    by_id = {t.trial_id: t for t in trials}
    decisions = [d for d in st["decisions"] if not d.get("final")]
    assert len(decisions) == 3  # ready points after epochs 3, 6, 9 (not 12)
    rows_seen = 0
    for d in decisions:
        order = sorted(d["scores"], key=lambda m: (-d["scores"][m], int(m)))
        assert d["ranking"] == order
        assert d["top"] == order[:n] and d["bottom"] == order[-n:]
        assert sorted(e["target"] for e in d["exploits"]) == sorted(d["bottom"])
        assert all(e["source"] in d["top"] for e in d["exploits"])
        rows_seen += len(d["exploits"])
    assert rows_seen == len(st["lineage"]) == 6
    # each exploit: the next segment restores the source's latest trial and starts at its epoch
    for row in st["lineage"]:
        target, source, te, ce, cc, nc = row
        assert ce == te + 1 and ce % 3 == 0 and te % 3 == 2
        nxt = [t for t in trials if str(t.hyperparameters.values[om.HP_MEMBER]) == target
               and t.hyperparameters.values[om.HP_INITIAL_EPOCH] == ce]
        assert len(nxt) == 1
        h = nxt[0].hyperparameters.values
        src_trial = by_id[h[om.HP_RESTORE]].hyperparameters.values
        assert str(src_trial[om.HP_MEMBER]) == source and src_trial[om.HP_EPOCHS] == ce
        assert json.loads(src_trial[om.HP_POLICY]) == cc["hp_policy"]
        assert json.loads(h[om.HP_POLICY]) == nc["hp_policy"] and h[om.HP_EXPLOITED] == source
        diff = np.asarray(nc["hp_policy"]) - np.asarray(cc["hp_policy"])
        assert (np.asarray(nc["hp_policy"]) <= UPPER).all()
    # non-exploiting members continue from their own previous trial
    for t in trials:
        h = t.hyperparameters.values
        if h[om.HP_INITIAL_EPOCH] and not h[om.HP_EXPLOITED]:
            prev = by_id[h[om.HP_RESTORE]].hyperparameters.values
            assert prev[om.HP_MEMBER] == h[om.HP_MEMBER] and prev[om.HP_EPOCHS] == h[om.HP_INITIAL_EPOCH]
    # same seed, same decisions; the log of each member = clone's log + own row
    o2 = make(tmp_path, name="q")
    run_all(o2)
    assert o2.pbt_state["lineage"] == st["lineage"]
    assert o2.pbt_state["decisions"] == st["decisions"]
    for mid, m in st["members"].items():
        for i, row in enumerate(m["log"][1:], 1):
            assert m["log"][i - 1][0] == row[1]  # unbroken chain
    o3 = make(tmp_path, name="r", seed=99)
    run_all(o3)
    assert o3.pbt_state["lineage"] != st["lineage"]


def test_lineage_files_and_schedule(tmp_path):
    o = make(tmp_path)
    run_all(o)
    ldir = o.lineage_dir
    for mid, m in o.pbt_state["members"].items():
        f = lin.log_path(ldir, mid)
        assert f.exists() == bool(m["log"])
        if m["log"]:
            assert read_lineage_rows(f)[0] == m["log"]
            from rolekd_tf.augment.policy import load_schedule

            sched = load_schedule(f, epochs=12)
            assert sched.as_array().tolist() == lin.schedule_for_rows(m["log"], 12).as_array().tolist()
    assert len((ldir / "lineage.jsonl").read_text().splitlines()) == len(o.pbt_state["lineage"])
    meta = json.loads((o.members_dir / "member_0.json").read_text())
    assert meta["epoch"] == 12 and len(meta["segments"]) == 4


def test_never_exploit_from_member_without_checkpoint(tmp_path):
    o = make(tmp_path, population=4)
    for _ in range(3):
        run_one(o)
    # the best member (id 3, highest offset) pretends to have no checkpoint
    t = o.create_trial("tuner0")
    o.update_trial(t.trial_id, {"val_accuracy": 0.9})
    t.status = "COMPLETED"
    orig = o._ready_point

    def hooked():
        o.pbt_state["members"]["3"]["ckpt_trial"] = None
        orig()

    o._ready_point = hooked
    o.end_trial(t)
    d = o.pbt_state["decisions"][-1]
    assert d["top"] == ["3"] and d["skipped"] == d["bottom"] and d["exploits"] == []
    assert o.pbt_state["lineage"] == []


def test_state_round_trip_mid_search(tmp_path):
    a = make(tmp_path, name="a")
    for _ in range(13):  # middle of generation 1
        run_one(a)
    state = json.loads(json.dumps(a.get_state()))  # JSON-able
    assert "rng" in state["pbt"]
    # resume from disk in a fresh oracle (what re-running the command does)
    b = make(tmp_path, name="a")
    _assert_resumes_identically(a, b)
    # a fresh oracle with another population refuses to resume this state
    c = make(tmp_path, name="a", population=6)
    with pytest.raises(ConfigError, match="population"):
        c.reload()


def test_interrupted_trial_is_retried_not_lost(tmp_path):
    a = make(tmp_path, name="a", population=4)
    for _ in range(5):
        run_one(a)
    t = a.create_trial("tuner0")  # running when the process dies
    b = make(tmp_path, name="a", population=4)
    b.reload()
    t2 = b.create_trial("tuner0")
    assert t2.trial_id == t.trial_id and t2.hyperparameters.values == t.hyperparameters.values
    b.update_trial(t2.trial_id, {"val_accuracy": 0.5})
    t2.status = "COMPLETED"
    b.end_trial(t2)
    run_all(b)
    done = [b.trials[i].hyperparameters.values for i in b.end_order]
    keys = [(h[om.HP_MEMBER], h[om.HP_GENERATION]) for h in done]
    assert len(keys) == len(set(keys)) == 16


def test_failed_member_is_forced_to_exploit(tmp_path):
    o = make(tmp_path, population=4)
    for i in range(4):
        run_one(o, status="FAILED" if i == 1 else "COMPLETED")
    d = o.pbt_state["decisions"][-1]
    assert "1" in [e["target"] for e in d["exploits"]]
    assert o.pbt_state["members"]["1"]["failed"] is False
    run_all(o)
    assert o.finished


def test_init_random_start_policies_seeded(tmp_path):
    from rolekd_tf.search.space import initial_policies

    o = make(tmp_path, name="a", init="random")
    first = [o.create_trial(f"t{i}").hyperparameters.values for i in range(8)]
    got = [json.loads(h[om.HP_POLICY]) for h in first]
    assert got == initial_policies("random", 8, 3)               # the search seed (3) draws them
    assert all(any(p[0::2]) for p in got) and all((np.asarray(p) <= UPPER).all() for p in got)
    assert [o.start_policy(str(i)) for i in range(8)] == got
    assert make(tmp_path, name="b", init="random").pbt_state["members"]["0"]["policy"] == got[0]
    assert make(tmp_path, name="c", init="random", seed=4).pbt_state["members"]["0"]["policy"] != got[0]
    assert make(tmp_path, name="d").pbt_state["members"]["0"]["policy"] == [0] * 60
    with pytest.raises(ConfigError, match="search.init='sparse'"):
        make(tmp_path, name="e", init="sparse")


def test_init_random_state_round_trip_and_mismatch(tmp_path):
    a = make(tmp_path, name="a", init="random")
    for _ in range(13):  # middle of generation 1
        run_one(a)
    b = make(tmp_path, name="a", init="random")
    _assert_resumes_identically(a, b)
    for mid in a.pbt_state["members"]:  # never-exploited members keep their random start
        m = a.pbt_state["members"][mid]
        if not m["log"]:
            assert m["policy"] == a.start_policy(mid) and any(m["policy"])
    # resuming with the other start rule is refused, naming the setting
    c = make(tmp_path, name="a")
    with pytest.raises(ConfigError, match="search.init='random', now 'zeros'"):
        c.reload()


def test_state_without_init_setting_resumes_as_zeros(tmp_path):
    """oracle.json written before search.init existed: no settings['init'], no start_policy."""
    a = make(tmp_path, name="a")
    for _ in range(5):
        run_one(a)
    state = json.loads(json.dumps(a.get_state()))
    del state["pbt"]["settings"]["init"]
    for m in state["pbt"]["members"].values():
        del m["start_policy"]
    b = make(tmp_path, name="x")
    b.set_state(state)
    assert b.start_policy("0") == [0] * 60
    with pytest.raises(ConfigError, match="search.init"):
        make(tmp_path, name="y", init="random").set_state(state)
