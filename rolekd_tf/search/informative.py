"""Did a search learn a schedule? Empty / unchanged schedules and the warning that names the fix.

PBA changes a member's policy only when it exploits another member (docs/METHOD.md §2). In a small
search (few members, few ready points) the best final member is often one that never exploited,
so its schedule is its start policy for every epoch: all zero with PBA's start (``search.init:
zeros``) — training with it is exactly training without a schedule — or, with ``search.init:
random``, the random start it was given (selected among the population's starts, not evolved).
``benchmarks/results/search_lineage.md`` measures how often that happens.

``search.py`` records the verdict in ``summary.json`` (``schedule_empty``, ``schedule_unchanged``,
``schedule_informative``, ``warning``) and prints the warning on stderr; :func:`schedule_status`
reads it back for the pipeline (no TensorFlow import).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from rolekd_tf.errors import CheckpointError


@dataclass(frozen=True)
class ScheduleStatus:
    """Verdict on a search's final schedule.

    empty:       every epoch's policy is all zero (training with it = training without a schedule)
    unchanged:   every epoch's policy is the best member's start policy (it never exploited)
    informative: neither empty nor unchanged
    warning:     one line naming the search and the setting to change ("" when informative)
    """

    empty: bool
    unchanged: bool
    warning: str = ""

    @property
    def informative(self) -> bool:
        return not (self.empty or self.unchanged)


def _remedies(init: str, ready_interval: int, population: int) -> str:
    fixes = []
    if init == "zeros":
        fixes.append("search.init=random")
    if ready_interval > 1:
        fixes.append("search.ready_interval=1")
    fixes.append(f"a larger search.population (now {population})")
    return ", ".join(fixes[:-1]) + (" or " if len(fixes) > 1 else "") + fixes[-1]


def check_schedule(schedule: np.ndarray, start_policy: Sequence[int], *, where: str, best_member: str,
                   exploits: int, init: str, ready_interval: int, population: int) -> ScheduleStatus:
    """Verdict for a final schedule ``[epochs, 60]`` whose best member started from ``start_policy``.

    ``where`` names the search (its directory) in the warning; ``init`` / ``ready_interval`` /
    ``population`` are the search's settings, used to name the ones worth changing.
    """
    arr = np.asarray(schedule)
    empty = not arr.any()
    unchanged = bool((arr == np.asarray(start_policy)[None, :]).all())
    fix = _remedies(init, ready_interval, population)
    why = f"best member {best_member} " + ("never exploited" if exploits == 0 else f"exploited {exploits}×")
    if empty:
        warning = (f"the search in {where} learned an all-zero schedule ({why}): training with it is "
                   f"training without a schedule; for an informative schedule use {fix}")
    elif unchanged:
        warning = (f"the search in {where} returned its best member's start policy unchanged ({why}): "
                   f"PBT selected it but learned nothing; for a learned schedule use {fix}")
    else:
        warning = ""
    return ScheduleStatus(empty=empty, unchanged=unchanged, warning=warning)


def schedule_status(search_dir: str | os.PathLike) -> ScheduleStatus:
    """The verdict of a finished search directory (``summary.json``; for a search finished before
    the verdict was recorded: ``schedule.json`` — all zero → empty — and its exploit count)."""
    d = Path(search_dir)
    summ = d / "summary.json"
    if not summ.exists():
        raise CheckpointError(f"{str(d)!r} has no summary.json: not a finished search directory")
    s = json.loads(summ.read_text(encoding="utf-8"))
    if "schedule_informative" in s:
        return ScheduleStatus(empty=bool(s["schedule_empty"]), unchanged=bool(s["schedule_unchanged"]),
                              warning=str(s.get("warning") or ""))
    from rolekd_tf.augment.policy import load_schedule

    arr = load_schedule(d / "schedule.json").as_array()
    empty = not np.asarray(arr).any()
    unchanged = empty or int(s.get("exploits_in_lineage", 1)) == 0
    msg = "" if not (empty or unchanged) else (
        f"the search in {d} (finished before the check existed) has an "
        f"{'all-zero' if empty else 'unchanged start'} schedule")
    return ScheduleStatus(empty=empty, unchanged=unchanged, warning=msg)


def schedule_is_informative(search_dir: str | os.PathLike) -> bool:
    """True when the finished search in ``search_dir`` learned a schedule (not empty, not its start)."""
    return schedule_status(search_dir).informative
