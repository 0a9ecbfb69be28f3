"""PBT lineage rows in Ray Tune's ``pbt_policy_<id>.txt`` format and schedule reconstruction.

A row is ``[target_id, clone_id, target_epoch, clone_epoch, clone_config, new_config]`` with the
configs as dicts holding ``hp_policy`` (60 ints) — what role-kd's Ray-Tune logs contain, one JSON
list per line. A member's log is the copy of its clone's log at exploit time plus its own row
(Ray: ``copyfile(clone_log, target_log)`` then append), so reading one file gives the whole
lineage of that member.

Epoch conventions written by :class:`~rolekd_tf.search.oracle.PBTOracle`: ``clone_epoch`` is the
number of epochs the clone had completed (= the epoch at which the new policy starts);
``target_epoch`` is the target's last completed epoch index (0-based), i.e. one less than its
count — the lag PBA's published logs show (``≡ 2 mod 3`` with interval 3).

:func:`schedule_for_rows` rebuilds a member's schedule with the one PBA ``parse_log`` parser,
:func:`rolekd_tf.augment.policy.parse_pba_log`, and the logs are written by that module's
:func:`~rolekd_tf.augment.policy.write_lineage_log`, so the schedule written by ``search.py`` is by
construction what ``load_schedule`` reads from the log.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

from rolekd_tf.augment.policy import Schedule, parse_pba_log, write_lineage_log
from rolekd_tf.search.space import initial_policy

LOG_PREFIX = "pbt_policy_"


def make_row(
    target_id: str,
    clone_id: str,
    target_epoch: int,
    clone_epoch: int,
    clone_policy: Sequence[int],
    new_policy: Sequence[int],
    *,
    extra_config: dict | None = None,
) -> list:
    """One Ray-Tune PBT log row. ``extra_config`` keys are added to both config dicts."""
    extra = dict(extra_config or {})
    return [
        str(target_id),
        str(clone_id),
        int(target_epoch),
        int(clone_epoch),
        {**extra, "hp_policy": [int(v) for v in clone_policy]},
        {**extra, "hp_policy": [int(v) for v in new_policy]},
    ]


def log_path(folder: str | os.PathLike, member_id: str) -> Path:
    return Path(folder) / f"{LOG_PREFIX}{member_id}.txt"


def rows_to_text(rows: Sequence[list]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def write_log(rows: Sequence[list], path: str | os.PathLike) -> None:
    """Write a lineage log atomically (JSON lines, Ray-Tune rows; the policy module's writer)."""
    write_lineage_log([list(r) for r in rows], path)


def schedule_for_rows(rows: Sequence[list], epochs: int, *,
                      default_policy: Sequence[int] | None = None) -> Schedule:
    """The ``epochs``-epoch schedule of a lineage (PBA ``parse_log``, via ``parse_pba_log``).
    Empty lineage (a member that never exploited) → ``default_policy`` (the member's start
    policy; all zeros when not given) for every epoch."""
    if not rows:
        return Schedule.constant(list(default_policy or initial_policy()), epochs)
    return parse_pba_log([list(r) for r in rows], epochs)
