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

:func:`rows_to_policies` is PBA's ``parse_log`` on rows; :func:`schedule_for_rows` returns the
policy module's ``Schedule`` built by the policy module's own parser when it is available, so the
schedule written by ``search.py`` is by construction what ``load_schedule`` reads from the log.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

from rolekd_tf.errors import ScheduleError
from rolekd_tf.fileio import atomic_write_text
from rolekd_tf.search.space import check_policy, initial_policy

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
    """Write a lineage log atomically (JSON lines, Ray-Tune rows).

    Uses ``rolekd_tf.augment.policy.write_lineage_log`` when that module provides it (the
    format owner), written to a temporary name and renamed, so a crash never leaves half a log.
    """
    writer = _policy_attr("write_lineage_log")
    if writer is None or not rows:
        atomic_write_text(path, rows_to_text(rows))
        return
    writer([list(r) for r in rows], str(path))  # atomic itself


def read_log(path: str | os.PathLike) -> list[list]:
    """Read a JSON-lines Ray-Tune lineage log (our own output)."""
    rows = []
    for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines()):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ScheduleError(f"{path}: line {i + 1} is not JSON ({e.msg})")
    return rows


def _cfg_policy(cfg: Any) -> list[int]:
    if isinstance(cfg, dict):
        if "hp_policy" not in cfg:
            raise ScheduleError("lineage row config has no 'hp_policy' key")
        cfg = cfg["hp_policy"]
    return check_policy(cfg, "hp_policy")


def rows_to_policies(
    rows: Sequence[list], epochs: int, *, default_policy: Sequence[int] | None = None
) -> list[list[int]]:
    """PBA ``parse_log`` on lineage rows: one policy per epoch, ``epochs`` entries.

    Rows before (and including) the last break in the chain (``row[i].target != row[i+1].clone``)
    are dropped; segment 0 is ``row0.clone_config`` for ``row0.clone_epoch`` epochs, then
    ``row[i].new_config`` for ``row[i+1].clone_epoch - row[i].clone_epoch`` epochs; the last
    segment runs to ``epochs``. No rows (a member that never exploited): ``default_policy``
    (all zeros) for every epoch.
    """
    rows = list(rows)
    if not rows:
        return [list(default_policy or initial_policy()) for _ in range(epochs)]
    start = 0
    for i in range(len(rows) - 1):
        if str(rows[i][0]) != str(rows[i + 1][1]):
            start = i + 1
    rows = rows[start:]
    out: list[list[int]] = []
    first = _cfg_policy(rows[0][4])
    out += [first] * int(rows[0][3])
    for i, row in enumerate(rows):
        pol = _cfg_policy(row[5])
        end = int(rows[i + 1][3]) if i + 1 < len(rows) else epochs
        if end < len(out):
            raise ScheduleError(
                f"lineage clone epochs go backwards at row {start + i + 1} ({end} < {len(out)})"
            )
        out += [pol] * (end - len(out))
    if len(out) != epochs:
        raise ScheduleError(f"lineage covers {len(out)} epochs, expected {epochs}")
    return [list(p) for p in out]


def _policy_attr(name: str):
    try:
        from rolekd_tf.augment import policy as policy_mod
    except Exception:  # pragma: no cover - module not written yet / import error
        return None
    return getattr(policy_mod, name, None)


def schedule_for_rows(rows: Sequence[list], epochs: int, *, default_policy: Sequence[int] | None = None):
    """The policy module's ``Schedule`` for a lineage (via its ``parse_pba_log``), or ``None``
    when the policy module is not available. Empty lineage → ``default_policy`` (the member's
    start policy; all zeros when not given) for every epoch."""
    Schedule = _policy_attr("Schedule")
    parse = _policy_attr("parse_pba_log")
    if Schedule is None:
        return None
    if rows and parse is not None:
        return parse([list(r) for r in rows], epochs)
    return Schedule(rows_to_policies(rows, epochs, default_policy=default_policy))
