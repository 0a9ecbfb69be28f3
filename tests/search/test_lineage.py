"""Lineage rows → per-epoch schedule: our reconstruction equals the importer's (load_schedule)."""
import json
from pathlib import Path

import numpy as np
import pytest

from rolekd_tf.augment.policy import load_schedule, read_lineage_rows
from rolekd_tf.errors import ScheduleError
from rolekd_tf.search import lineage as lin


def rows_to_policies(rows, epochs):
    """The lineage's per-epoch policies as lists (the one parser: ``schedule_for_rows``)."""
    return lin.schedule_for_rows(rows, epochs).as_array().tolist()


def read_log(path):
    return read_lineage_rows(path)[0]

PBA_FILE = Path("/work/shared/data/schedules/pba-rcifar10-16-wrn.txt")


def P(v):
    return [v % 11 if i % 2 == 0 else v % 10 for i in range(60)]


def chain():
    # member 3 cloned 1 at epoch 3; member 2 cloned 3 at 6; member 0 cloned 2 at 9
    return [
        lin.make_row("3", "1", 2, 3, P(0), P(1)),
        lin.make_row("2", "3", 5, 6, P(1), P(2)),
        lin.make_row("0", "2", 8, 9, P(2), P(3)),
    ]


def test_rows_to_policies_segments():
    pols = rows_to_policies(chain(), 12)
    assert len(pols) == 12
    assert pols[:3] == [P(0)] * 3 and pols[3:6] == [P(1)] * 3
    assert pols[6:9] == [P(2)] * 3 and pols[9:] == [P(3)] * 3


def test_chain_break_drops_earlier_rows():
    rows = [lin.make_row("5", "4", 2, 3, P(7), P(8))] + chain()  # row0.target 5 != row1.clone 1
    assert rows_to_policies(rows, 12) == rows_to_policies(chain(), 12)


def test_empty_lineage_is_constant_initial_policy():
    assert rows_to_policies([], 5) == [[0] * 60] * 5
    s = lin.schedule_for_rows([], 5)
    assert s.epochs == 5 and np.all(s.as_array() == 0)


def test_written_log_matches_importer(tmp_path):
    rows = chain()
    path = lin.log_path(tmp_path, "0")
    lin.write_log(rows, path)
    assert path.name == "pbt_policy_0.txt"
    lines = path.read_text().splitlines()
    assert len(lines) == 3
    first = json.loads(lines[0])
    assert first[:4] == ["3", "1", 2, 3] and first[4]["hp_policy"] == P(0)
    assert read_log(path) == rows
    ours = lin.schedule_for_rows(rows, 12)
    theirs = load_schedule(path, epochs=12)
    assert ours.as_array().tolist() == theirs.as_array().tolist()
    assert np.asarray(rows_to_policies(rows, 12)).tolist() == theirs.as_array().tolist()


@pytest.mark.skipif(not PBA_FILE.exists(), reason="PBA published schedule not available")
def test_pba_published_schedule_worked_check():
    rows, _, _ = read_lineage_rows(PBA_FILE)
    pols = rows_to_policies(rows, 200)
    lengths, prev, run = [], None, 0
    sched = load_schedule(PBA_FILE, epochs=200)
    assert sched.as_array().tolist() == pols
    assert sched.segment_lengths == [12, 22, 20, 20, 1, 6, 3, 27, 6, 21, 6, 9, 7, 17, 6, 12, 5]
    assert pols[0] == [0] * 60 and pols[199][:10] == [0, 6, 6, 6, 10, 0, 3, 4, 5, 8]


def test_backwards_clone_epochs_rejected():
    rows = [lin.make_row("3", "1", 2, 6, P(0), P(1)), lin.make_row("2", "3", 5, 3, P(1), P(2))]
    with pytest.raises(ScheduleError):
        rows_to_policies(rows, 12)
