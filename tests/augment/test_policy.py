"""Policy / Schedule / PBA lineage parsing (rolekd_tf.augment.policy) — pure Python + NumPy."""
from __future__ import annotations

import ast
import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

from rolekd_tf.augment.policy import (
    LAYOUT, OP_ORDER, Policy, Schedule, field_name, load_schedule, parse_pba_log, write_lineage_log,
)
from rolekd_tf.errors import RolekdError, ScheduleError

SCHEDULES = Path(os.environ.get("ROLEKD_SHARED", "/work/shared")) / "data" / "schedules"
CIFAR = SCHEDULES / "pba-rcifar10-16-wrn.txt"
SVHN = SCHEDULES / "pba-rsvhn-16-wrn.txt"

PINNED = ("Rotate", "TranslateX", "TranslateY", "Brightness", "Color", "Invert", "Sharpness",
          "Posterize", "ShearX", "Solarize", "ShearY", "Equalize", "AutoContrast", "Cutout", "Contrast")


def rand_policy(rng) -> list[int]:
    v = []
    for i in range(60):
        v.append(int(rng.integers(0, 11 if i % 2 == 0 else 10)))
    return v


def ray_config(policy, i=0) -> dict:
    """A role-kd-like Ray-Tune config: ~30 keys, hp_policy among them (incl. bools / None)."""
    cfg = {f"key_{j}": j * 0.5 for j in range(26)}
    cfg.update({"hp_policy": list(policy), "no_cutout": True, "use_hp_policy": False,
                "checkpoint": None, "model_name": "wrn_40_2", "trial": i})
    return cfg


def need(path: Path):
    if not path.exists():
        pytest.skip(f"shared schedule {path} is not available")
    return path


# ------------------------------------------------------------------------------------------
# op order
# ------------------------------------------------------------------------------------------
def test_op_order_pinned():
    assert OP_ORDER == PINNED
    assert field_name(0) == "Rotate copy A prob"
    assert field_name(17) == "ShearX copy A level"
    assert field_name(30) == "Rotate copy B prob"
    assert field_name(59) == "Contrast copy B level"


@pytest.mark.skipif(importlib.util.find_spec("rolekd_tf.augment.ops") is None,
                    reason="rolekd_tf.augment.ops not written yet")
def test_op_order_agrees_with_ops_module():
    from rolekd_tf.augment import ops

    assert tuple(ops.OP_NAMES) == OP_ORDER


# ------------------------------------------------------------------------------------------
# Policy
# ------------------------------------------------------------------------------------------
def test_policy_validation_messages():
    v = [0] * 60
    v[17] = 12
    with pytest.raises(ScheduleError, match=r"policy\[17\] \(ShearX copy A level\) = 12 is out of range 0\.\.9"):
        Policy(v)
    v = [0] * 60
    v[32] = 11
    with pytest.raises(ScheduleError, match=r"policy\[32\] \(TranslateX copy B prob\) = 11 is out of range 0\.\.10"):
        Policy(v)
    v[32] = -1
    with pytest.raises(ScheduleError, match=r"policy\[32\].*= -1"):
        Policy(v)
    with pytest.raises(ScheduleError, match="has 59 integers, expected 60"):
        Policy([0] * 59)
    v = [0] * 60
    v[3] = 2.0
    with pytest.raises(ScheduleError, match=r"policy\[3\].*not an integer"):
        Policy(v)
    v[3] = True
    with pytest.raises(ScheduleError, match=r"policy\[3\]"):
        Policy(v)
    with pytest.raises(ScheduleError):
        Policy("0" * 60)
    # a RolekdError is also a ValueError, and the message is one line
    with pytest.raises(ValueError):
        Policy([0] * 61)


def test_policy_helpers_and_immutability():
    rng = np.random.default_rng(0)
    vals = rand_policy(rng)
    p = Policy(vals)
    assert p.as_list() == vals and len(p) == 60 and list(p) == vals
    assert Policy(np.asarray(vals, dtype=np.int64)) == p
    assert Policy(p) == p and hash(Policy(vals)) == hash(p)
    with pytest.raises(AttributeError):
        p._v = (0,) * 60
    assert Policy.zeros().as_list() == [0] * 60
    slots = p.slots()
    assert len(slots) == 30
    assert slots[0] == ("Rotate", vals[0], vals[1])
    assert slots[14] == ("Contrast", vals[28], vals[29])
    assert slots[15] == ("Rotate", vals[30], vals[31])
    assert Policy.from_slots(slots) == p
    with pytest.raises(ScheduleError, match="slot 1"):
        Policy.from_slots([("Rotate", 0, 0)] * 30)
    assert "no ops" in Policy.zeros().describe()
    q = [0] * 60
    q[26], q[27] = 10, 9          # Cutout copy A
    assert Policy(q).describe() == "Cutout p=1.0 L=9"


# ------------------------------------------------------------------------------------------
# Schedule
# ------------------------------------------------------------------------------------------
def make_schedule(lengths, seed=0) -> Schedule:
    rng = np.random.default_rng(seed)
    return Schedule.from_segments([(rand_policy(rng), n) for n in lengths], source={"test": True})


def test_schedule_basics():
    s = make_schedule([3, 2])
    assert s.epochs == 5 and len(s) == 5
    a = s.as_array()
    assert a.dtype == np.int32 and a.shape == (5, 60)
    assert s.segment_lengths == [3, 2]
    assert s.policy_for_epoch(4) == s.segments[1][0]
    for bad in (5, -1, 1.5):
        with pytest.raises(ScheduleError, match=r"outside the schedule's epochs 0\.\.4"):
            s.policy_for_epoch(bad)
    with pytest.raises(ScheduleError, match="at least 1 epoch"):
        Schedule([])
    # run-length segments when built from per-epoch policies
    t = Schedule(list(s))
    assert t == s and t.segment_lengths == [3, 2]


def test_stretch():
    s = make_schedule([3, 2])
    t = s.stretch(15)
    assert t.epochs == 15 and t.segment_lengths == [9, 6]
    assert all(t.policy_for_epoch(e) == s.policy_for_epoch(e // 3) for e in range(15))
    assert s.stretch(5) is s
    with pytest.raises(ScheduleError, match="not an integer multiple of 5"):
        s.stretch(7)
    u = s.stretch(7, allow_uneven=True)
    assert all(u.policy_for_epoch(e) == s.policy_for_epoch((e * 5) // 7) for e in range(7))
    with pytest.raises(ScheduleError):
        s.stretch(0)


def test_json_round_trip(tmp_path):
    s = make_schedule([4, 1, 3], seed=3)
    doc = s.to_json()
    assert doc["format"] == "rolekd-schedule" and doc["version"] == 1
    assert doc["op_order"] == list(PINNED) and doc["layout"] == LAYOUT
    assert len(doc["epochs"]) == 8 and all(len(e) == 60 for e in doc["epochs"])
    path = tmp_path / "s.json"
    s.save(path)
    assert json.loads(path.read_text())["epochs"] == doc["epochs"]
    t = load_schedule(path)
    assert t == s and t.segment_lengths == [4, 1, 3]
    assert np.array_equal(t.as_array(), s.as_array())
    assert Schedule.from_json(path.read_text()) == s
    # epochs= on our JSON: integer multiple stretches, anything else is an error
    assert load_schedule(path, 16).segment_lengths == [8, 2, 6]
    with pytest.raises(ScheduleError, match=r"s\.json.*not an integer multiple"):
        load_schedule(path, 12)
    assert load_schedule(path, 12, allow_uneven=True).epochs == 12
    # no stray temporaries from the atomic write
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json"]


def test_json_op_order_remap(tmp_path):
    s = make_schedule([2, 3], seed=5)
    doc = s.to_json()
    rng = np.random.default_rng(1)
    perm = list(rng.permutation(15))            # file op j is OUR op perm[j]
    order = [PINNED[k] for k in perm]
    epochs = []
    for row in doc["epochs"]:
        new = [0] * 60
        for j, k in enumerate(perm):
            for base in (0, 30):
                new[base + 2 * j], new[base + 2 * j + 1] = row[base + 2 * k], row[base + 2 * k + 1]
        epochs.append(new)
    doc2 = dict(doc, op_order=order, epochs=epochs)
    path = tmp_path / "perm.json"
    path.write_text(json.dumps(doc2))
    assert load_schedule(path) == s

    for bad_order, msg in ((order[:-1], "not a permutation"),
                           (order[:-1] + ["Zoom"], r"unknown \['Zoom'\]"),
                           (order[:-1] + [order[0]], "duplicated")):
        path.write_text(json.dumps(dict(doc2, op_order=bad_order)))
        with pytest.raises(ScheduleError, match=rf"perm\.json: field 'op_order' .*{msg}"):
            load_schedule(path)
    d = dict(doc2)
    del d["op_order"]
    path.write_text(json.dumps(d))
    with pytest.raises(ScheduleError, match=r"perm\.json: field 'op_order' is missing.*cannot be decided"):
        load_schedule(path)


def test_json_bad_inputs(tmp_path):
    s = make_schedule([2, 2], seed=7)
    good = s.dumps()
    p = tmp_path / "bad.json"

    p.write_text(good[: len(good) // 2])
    with pytest.raises(ScheduleError, match=r"bad\.json: invalid or truncated JSON at line \d+"):
        load_schedule(p)
    doc = s.to_json()
    doc["epochs"][2][17] = 12
    p.write_text(json.dumps(doc))
    with pytest.raises(ScheduleError,
                       match=r"bad\.json: epochs\[2\]\[17\] \(ShearX copy A level\) = 12 is out of range 0\.\.9"):
        load_schedule(p)
    doc = s.to_json()
    doc["epochs"][1] = doc["epochs"][1][:59]
    p.write_text(json.dumps(doc))
    with pytest.raises(ScheduleError, match=r"bad\.json: epochs\[1\] has 59 integers, expected 60"):
        load_schedule(p)
    for key, val, msg in (("version", 2, "field 'version' = 2"),
                          ("format", "other", "field 'format' = 'other'"),
                          ("epochs", [], "field 'epochs' is empty"),
                          ("layout", "x", "field 'layout'")):
        p.write_text(json.dumps(dict(s.to_json(), **{key: val})))
        with pytest.raises(ScheduleError, match=rf"bad\.json: {msg}"):
            load_schedule(p)
    p.write_text('{"a": 1}')
    with pytest.raises(ScheduleError, match=r"bad\.json: unknown format"):
        load_schedule(p)


# ------------------------------------------------------------------------------------------
# PBA published schedules
# ------------------------------------------------------------------------------------------
CIFAR_LENGTHS = [12, 22, 20, 20, 1, 6, 3, 27, 6, 21, 6, 9, 7, 17, 6, 12, 5]


def test_pba_cifar10_worked_check():
    s = load_schedule(need(CIFAR), 200)
    assert s.epochs == 200
    assert s.segment_lengths == CIFAR_LENGTHS
    assert sum(CIFAR_LENGTHS) == 200
    for e in range(12):
        assert s.policy_for_epoch(e) == Policy.zeros()
    assert s.policy_for_epoch(12) != Policy.zeros()
    last = s.policy_for_epoch(199)
    assert last.as_list()[:10] == [0, 6, 6, 6, 10, 0, 3, 4, 5, 8]
    assert all(s.policy_for_epoch(e) == last for e in range(195, 200))
    assert s.policy_for_epoch(194) != last
    assert s.source["flavour"] == "pba" and s.source["rows_dropped"] == 0
    with pytest.raises(ScheduleError):
        s.policy_for_epoch(200)
    # training 2x as long: each epoch's policy twice
    t = load_schedule(CIFAR, 200, train_epochs=400)
    assert t.segment_lengths == [2 * n for n in CIFAR_LENGTHS]
    assert t == s.stretch(400)
    with pytest.raises(ScheduleError, match="not an integer multiple"):
        load_schedule(CIFAR, 200, train_epochs=300)


def test_pba_svhn_sanity():
    text = need(SVHN).read_text()
    rows = [ast.literal_eval(line) for line in text.splitlines() if line.strip()]
    s = load_schedule(SVHN, 160)
    assert s.epochs == 160
    lengths = s.segment_lengths
    assert len(lengths) == len(rows) + 1 and all(n > 0 for n in lengths) and sum(lengths) == 160
    assert lengths[0] == rows[0][3]
    assert s.policy_for_epoch(0) == Policy.zeros()
    assert s.policy_for_epoch(159) == Policy(rows[-1][5])
    assert (s.as_array()[:, 0::2] <= 10).all() and (s.as_array()[:, 1::2] <= 9).all()
    # the same file read in-memory through parse_pba_log
    assert parse_pba_log(rows, 160) == s


# ------------------------------------------------------------------------------------------
# Ray-Tune JSON lines, truncation, write_lineage_log
# ------------------------------------------------------------------------------------------
def lineage_rows(seed=11):
    """Rows of trial '4''s pbt_policy file: an inherited prefix that must be dropped, then its lineage.

    Kept lineage: 2 -(cloned at 6)-> 7 -(cloned at 15)-> 4 -(cloned at 24)-> ... final target '4'.
    """
    rng = np.random.default_rng(seed)
    P = [rand_policy(rng) for _ in range(8)]
    prefix = [
        ["3", "1", 5, 6, P[0], P[1]],       # chains to the next row (3 == clone of next)
        ["5", "3", 8, 9, P[1], P[2]],       # break after this row: 5 != next clone "0"
        ["9", "0", 11, 12, P[3], P[4]],     # break after this row too: 9 != next clone "2" (last break)
    ]
    kept = [
        ["7", "2", 5, 6, P[5], P[6]],
        ["4", "7", 14, 15, P[6], P[7]],
        ["1", "4", 23, 24, P[7], P[0]],
        ["4", "1", 29, 30, P[0], P[2]],
    ]
    return prefix, kept, P


def test_ray_tune_log_matches_pba_literal(tmp_path):
    prefix, kept, P = lineage_rows()
    epochs = 36
    ray = tmp_path / "pbt_policy_4.txt"
    lines = []
    for i, r in enumerate(prefix + kept):
        lines.append(json.dumps([r[0], r[1], r[2], r[3], ray_config(r[4], i), ray_config(r[5], i)]))
    ray.write_text("\n".join(lines) + "\n")
    pba = tmp_path / "pba.txt"
    pba.write_text("\n".join(repr(r) for r in kept) + "\n")
    assert "'" in pba.read_text()                  # single-quoted Python literals

    s_ray = load_schedule(ray, epochs)
    s_pba = load_schedule(pba, epochs)
    assert s_ray == s_pba
    assert s_ray.source["flavour"] == "ray-tune" and s_pba.source["flavour"] == "pba"
    assert s_ray.source["rows_dropped"] == 3
    assert s_ray.segment_lengths == [6, 9, 9, 6, 6]
    expected = [P[5]] * 6 + [P[6]] * 9 + [P[7]] * 9 + [P[0]] * 6 + [P[2]] * 6
    assert s_ray.as_array().tolist() == expected
    # parse_pba_log on in-memory rows (dict and list configs mixed)
    mixed = [list(r[:4]) + [ray_config(r[4]), r[5]] for r in prefix + kept]
    assert parse_pba_log(mixed, epochs) == s_ray
    # whole-file list of rows is accepted too
    whole = tmp_path / "whole.txt"
    whole.write_text(repr(kept))
    assert load_schedule(whole, epochs) == s_pba


def test_write_lineage_log_round_trip(tmp_path):
    prefix, kept, P = lineage_rows(seed=3)
    rows = [[r[0], r[1], r[2], r[3], ray_config(r[4]), Policy(r[5])] for r in prefix + kept]
    rows[-1][4] = np.asarray(rows[-1][4]["hp_policy"])   # bare arrays / Policy objects are fine too
    path = tmp_path / "pbt_policy_4.txt"
    write_lineage_log(rows, path)
    text = path.read_text().splitlines()
    assert len(text) == len(rows)
    for line in text:
        row = json.loads(line)
        assert isinstance(row[4], dict) and isinstance(row[5], dict)
        assert len(row[4]["hp_policy"]) == 60 and len(row[5]["hp_policy"]) == 60
        assert ast.literal_eval(line) == row     # PBA's parse_log reads lines with ast.literal_eval
    assert json.loads(text[0])[4]["no_cutout"] == 1 and "checkpoint" not in json.loads(text[0])[4]
    s = load_schedule(path, 36)
    assert s == parse_pba_log([[*r[:4], r[4], list(r[5])] for r in prefix + kept], 36)
    assert s.segment_lengths == [6, 9, 9, 6, 6]
    with pytest.raises(ScheduleError, match=r"row 1: field new_config"):
        write_lineage_log([kept[0], kept[1][:5] + [[0] * 59]], path)
    assert len(path.read_text().splitlines()) == len(rows)       # failed write left the old file


# ------------------------------------------------------------------------------------------
# bad lineage logs: one-line ScheduleError naming file, line and field
# ------------------------------------------------------------------------------------------
def write_rows(path: Path, rows, *, flavour="pba"):
    if flavour == "pba":
        path.write_text("\n".join(repr(r) for r in rows) + "\n")
    else:
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def assert_error(path, epochs, *patterns):
    with pytest.raises(ScheduleError) as ei:
        load_schedule(path, epochs)
    msg = str(ei.value)
    assert "\n" not in msg
    assert msg.startswith(str(path)), msg
    for pat in patterns:
        assert pat in msg, (pat, msg)
    return msg


def test_bad_logs(tmp_path):
    _, kept, _ = lineage_rows(seed=5)
    f = tmp_path / "log.txt"

    rows = [list(r) for r in kept]
    rows[1][5] = rows[1][5][:59]
    assert_error(write_rows(f, rows), 36, "line 2", "field new_config", "59 integers, expected 60")

    rows = [list(r) for r in kept]
    rows[2][4] = list(rows[2][4])
    rows[2][4][17] = 12
    assert_error(write_rows(f, rows), 36, "line 3", "field clone_config[17] (ShearX copy A level) = 12",
                 "out of range 0..9")

    rows = [[r[0], r[1], r[2], r[3], ray_config(r[4]), ray_config(r[5])] for r in kept]
    rows[3][5]["hp_policy"][0] = 11
    assert_error(write_rows(f, rows, flavour="json"), 36, "line 4",
                 "field new_config.hp_policy[0] (Rotate copy A prob) = 11", "0..10")
    del rows[3][5]["hp_policy"]
    assert_error(write_rows(f, rows, flavour="json"), 36, "line 4", "new_config", "no 'hp_policy'")

    rows = [list(r) for r in kept]
    rows[1] = rows[1][:5]
    assert_error(write_rows(f, rows), 36, "line 2", "5 fields, expected 6")
    rows = [list(r) for r in kept]
    rows[2][3] = "x"
    assert_error(write_rows(f, rows), 36, "line 3", "field clone_epoch = 'x'")

    # broken lineage: clone epochs not increasing -> a segment length that is not positive
    rows = [list(r) for r in kept]
    rows[2][3] = 10                      # < previous clone epoch 15
    assert_error(write_rows(f, rows), 36, "broken lineage", "line 3", "clone_epoch",
                 "segment length -5 is not positive")
    # --epochs smaller than the last clone epoch
    assert_error(write_rows(f, kept), 30, "broken lineage", "line 4", "segment length 0 is not positive",
                 "--epochs")

    # truncated Ray-Tune JSON line (writer killed mid-line)
    rows = [[r[0], r[1], r[2], r[3], ray_config(r[4]), ray_config(r[5])] for r in kept]
    write_rows(f, rows, flavour="json")
    f.write_text(f.read_text()[:-200])
    assert_error(f, 36, "line 4", "not a valid log row", "truncated")

    # log formats need the search's epoch count
    assert_error(write_rows(f, kept), None, "need --epochs N")

    # empty, unreadable, unknown format
    f.write_text("\n\n")
    assert_error(f, 36, "empty")
    assert_error(tmp_path / "missing.txt", 36, "not found")
    d = tmp_path / "adir"
    d.mkdir()
    assert_error(d, 36, "is a directory")
    f.write_bytes(b"\xff\xfe\x00binary")
    assert_error(f, 36, "not a text schedule file")
    f.write_text("epoch,policy\n0,1\n")
    assert_error(f, 36, "unknown format")


def test_literal_eval_only(tmp_path):
    marker = tmp_path / "pwned"
    f = tmp_path / "evil.txt"
    f.write_text(f"['1', '2', 3, 4, __import__('pathlib').Path({str(marker)!r}).touch(), [0]]\n")
    with pytest.raises(ScheduleError, match=r"evil\.txt: line 1: not a valid log row"):
        load_schedule(f, 10)
    assert not marker.exists()


def test_parse_pba_log_in_memory_errors():
    with pytest.raises(ScheduleError, match="broken lineage: the log has no rows"):
        parse_pba_log([], 10)
    with pytest.raises(ScheduleError, match="row 0: row has 3 fields"):
        parse_pba_log([[1, 2, 3]], 10)
    with pytest.raises(ScheduleError, match="search epochs"):
        parse_pba_log([["a", "b", 1, 2, [0] * 60, [0] * 60]], 0)
    # ids compare as strings (int ids from other writers are fine)
    s = parse_pba_log([[7, 2, 1, 2, [0] * 60, [1] * 60], ["9", "7", 4, 5, [1] * 60, [2] * 60]], 8)
    assert s.segment_lengths == [2, 3, 3]


def test_errors_are_rolekd_errors():
    assert issubclass(ScheduleError, RolekdError)


# ------------------------------------------------------------------------------------------
# the one definition of the format: layout helpers, and every user imports them
# ------------------------------------------------------------------------------------------
def test_flat_layout_round_trips():
    from rolekd_tf.augment import policy as P

    # the documented layout: copy A op k -> [2k] prob, [2k+1] level; copy B -> [30+2k], [31+2k]
    seen = []
    for k in range(15):
        assert P.flat_index(0, k, P.PROB) == 2 * k and P.flat_index(0, k, P.LEVEL) == 2 * k + 1
        assert P.flat_index(1, k, P.PROB) == 30 + 2 * k and P.flat_index(1, k, P.LEVEL) == 31 + 2 * k
        seen += [P.flat_index(c, k, f) for c in (0, 1) for f in (0, 1)]
    assert sorted(seen) == list(range(60)) == list(range(P.POLICY_LEN))
    # reshaping to LAYOUT_SHAPE indexes the same integers as flat_index
    v = np.arange(60)
    grid = v.reshape(P.LAYOUT_SHAPE)
    for c in (0, 1):
        for k in range(15):
            for f in (0, 1):
                assert grid[c, k, f] == P.flat_index(c, k, f)
    # slot s: integers 2s, 2s+1, op s % 15; upper bounds 10 (prob) / 9 (level)
    assert [P.slot_op(s) for s in range(30)] == list(range(15)) * 2
    assert P.UPPER.tolist() == [10, 9] * 30
    rng = np.random.default_rng(5)
    pol = Policy(rand_policy(rng))
    slots = pol.slots()
    assert len(slots) == P.NUM_SLOTS == 30
    for s, (name, prob, level) in enumerate(slots):
        assert name == OP_ORDER[s % 15] and (prob, level) == (pol[2 * s], pol[2 * s + 1])
    assert Policy.from_slots(slots) == pol
    assert field_name(P.flat_index(1, OP_ORDER.index("Cutout"), P.LEVEL)) == "Cutout copy B level"


def test_format_users_import_the_one_definition():
    """No module but augment/policy.py defines the op list, the sizes or the bounds (it failed
    when ops.py, apply.py and search/space.py each had their own)."""
    import rolekd_tf
    from rolekd_tf.augment import policy as P
    from rolekd_tf.search import oracle, space

    format_names = {"OP_ORDER", "OP_NAMES", "NUM_OPS", "NUM_SLOTS", "POLICY_LEN", "POLICY_LENGTH",
                    "PROB_MAX", "LEVEL_MAX", "NUM_LEVELS", "UPPER"}
    root = Path(rolekd_tf.__file__).parent
    offenders = []
    for f in sorted(root.rglob("*.py")):
        if f == Path(P.__file__):
            continue
        tree = ast.parse(f.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            targets = node.targets if isinstance(node, ast.Assign) else (
                [node.target] if isinstance(node, ast.AnnAssign) else [])
            offenders += [f"{f.relative_to(root)}:{node.lineno} {t.id}" for t in targets
                          if isinstance(t, ast.Name) and t.id in format_names]
            if isinstance(node, (ast.Tuple, ast.List)) and \
                    sorted(str(getattr(e, "value", "")) for e in node.elts) == sorted(OP_ORDER):
                offenders.append(f"{f.relative_to(root)}:{node.lineno} op list")
            if isinstance(node, ast.FunctionDef) and node.name == "check_policy":
                offenders.append(f"{f.relative_to(root)}:{node.lineno} check_policy")
    assert offenders == []
    assert space.check_policy is P.check_policy and oracle.check_policy is P.check_policy
    assert space.UPPER is P.UPPER


def _independent_per_epoch(rows, epochs):
    """PBA's parse_log restated per epoch: after the last chain break, epoch e trains the
    new_config of the last row whose clone_epoch <= e (row 0's clone_config before that)."""
    start = 0
    for i in range(len(rows) - 1):
        if rows[i][0] != rows[i + 1][1]:
            start = i + 1
    kept = rows[start:]
    out = []
    for e in range(epochs):
        pol = kept[0][4]
        for r in kept:
            if r[3] <= e:
                pol = r[5]
        out.append(list(pol))
    return out


@pytest.mark.parametrize("path,epochs", [(CIFAR, 200), (SVHN, 160)])
def test_published_schedule_parses_like_an_independent_reading(path, epochs):
    from rolekd_tf.search.lineage import schedule_for_rows

    text = need(path).read_text()
    rows = [ast.literal_eval(line) for line in text.splitlines() if line.strip()]
    want = _independent_per_epoch(rows, epochs)
    got = load_schedule(path, epochs)
    assert got.as_array().shape == (epochs, 60)
    assert got.as_array().tolist() == want
    # the search's reconstruction goes through the same parser
    assert schedule_for_rows(rows, epochs).as_array().tolist() == want
