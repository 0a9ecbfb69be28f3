"""The one checkpoint format of a training run: a :class:`~rolekd_tf.distill.Distiller`'s state.

``state.npz`` holds, in a fixed order, the student's weights (incl. BatchNorm moving statistics),
then every other variable of the Distiller that is not the teacher's (MHGD heads, adapters, DML
peer, epoch, λ), then the optimizer's variables, as ``v00000``, ``v00001``, …, plus ``meta``
(JSON: ``version``, ``epoch``, ``num_variables``, ``shapes`` and the caller's extra keys). The
same metadata is written beside it as ``state.json`` for humans. The teacher is not stored (it is
a finished run of its own).

Training (``RUN_DIR/checkpoints/state.npz``, resume) and the PBT search (per-trial
``state.npz``, exploit) both read and write this format through ``Task.save_state`` /
``Task.load_state``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rolekd_tf.errors import CheckpointError
from rolekd_tf.fileio import atomic_path, atomic_write_json

STATE_VERSION = 1


def state_variables(model) -> list:
    """The variables a checkpoint holds, in file order: student, the Distiller's own non-teacher
    variables, optimizer."""
    student = model.student
    vs = list(student.weights)
    extra = [v for v in model.weights if all(v is not s for s in vs)]
    teacher_ids = set()
    if getattr(model, "teacher", None) is not None:
        teacher_ids = {id(v) for v in model.teacher.weights}
    extra = [v for v in extra if id(v) not in teacher_ids]
    return vs + extra + list(model.optimizer.variables)


def save_state(model, path, *, epoch: int, extra: dict | None = None) -> None:
    """Write ``model``'s state after ``epoch`` finished epochs to ``path`` (``.npz``) and its
    metadata to ``path`` with suffix ``.json``, atomically."""
    path = Path(path)
    vs = state_variables(model)
    arrays = {f"v{i:05d}": np.asarray(v.numpy()) for i, v in enumerate(vs)}
    meta = {
        "version": STATE_VERSION,
        "epoch": int(epoch),
        "num_variables": len(vs),
        "shapes": [list(v.shape) for v in vs],
    }
    meta.update(extra or {})
    # The metadata also goes INSIDE the .npz (one atomic rename), so a kill between the two
    # renames can never pair new weights with an old epoch number; state.json is for humans.
    arrays["meta"] = np.asarray(json.dumps(meta))
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    atomic_write_json(path.with_suffix(".json"), meta)


def load_state(model, path) -> dict:
    """Restore what :func:`save_state` wrote into ``model``'s variables; returns its metadata
    (``epoch`` …). A missing, unreadable or mismatching file is a :class:`CheckpointError`."""
    path = Path(path)
    meta_path = path.with_suffix(".json")
    try:
        data = np.load(path)
        meta = json.loads(str(data["meta"])) if "meta" in data.files else json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {str(path)!r} is missing") from None
    except Exception as e:
        raise CheckpointError(f"checkpoint {str(path)!r} is unreadable: {type(e).__name__}") from None
    vs = state_variables(model)
    if meta.get("version") != STATE_VERSION or meta.get("num_variables") != len(vs):
        raise CheckpointError(
            f"checkpoint {str(path)!r} does not match this model ({meta.get('num_variables')} "
            f"variables saved, {len(vs)} expected): was it written with another config?"
        )
    for i, v in enumerate(vs):
        arr = data[f"v{i:05d}"]
        if tuple(arr.shape) != tuple(v.shape):
            raise CheckpointError(
                f"checkpoint {str(path)!r}: variable {v.path} has shape {tuple(arr.shape)} "
                f"saved but {tuple(v.shape)} expected"
            )
        v.assign(arr)
    return meta
