"""Augmentation policies and per-epoch schedules (pure Python + NumPy, no TensorFlow).

This module is the one definition of the policy format; the TF ops (``augment.ops``,
``augment.apply``), the search (``search.space``, ``search.tuner``), plots and benchmarks import
the op order, the sizes, the flat layout and the validation from here.

A **policy** is 60 integers (docs/METHOD.md §1): two independent copies (A, B) of the 15 ops in
:data:`OP_ORDER`, each a (probability 0..10, level 0..9) pair. Copy A of op ``k`` is
``v[2k]`` (prob), ``v[2k+1]`` (level); copy B is ``v[30+2k]``, ``v[31+2k]``. In array terms the
flat vector is ``[copy, op, field]`` in C order (:data:`LAYOUT_SHAPE`, :func:`flat_index`): slot
``s`` (0..29) holds ``v[2s]``, ``v[2s+1]`` and applies op ``s % 15`` (:func:`slot_op`).

A **schedule** is one policy per training epoch. It is read from

* our versioned JSON (``{"format": "rolekd-schedule", "version": 1, ...}``),
* PBA's published schedules (one Python-literal row per line, single quotes, bare 60-int
  configs; parsed with :func:`ast.literal_eval` only, never ``eval``),
* Ray-Tune ``pbt_policy_<id>.txt`` lineage logs (one JSON row per line, configs are dicts
  holding ``hp_policy``),

and rebuilt from a lineage log with PBA's ``parse_log`` algorithm (:func:`parse_pba_log`).
"""
from __future__ import annotations

import ast
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from rolekd_tf.errors import ScheduleError
from rolekd_tf.fileio import atomic_write_text

__all__ = [
    "OP_ORDER",
    "NUM_OPS",
    "NUM_COPIES",
    "NUM_SLOTS",
    "POLICY_LEN",
    "PROB_MAX",
    "LEVEL_MAX",
    "NUM_LEVELS",
    "UPPER",
    "LAYOUT_SHAPE",
    "flat_index",
    "slot_op",
    "slot_probabilities",
    "slot_levels",
    "check_policy",
    "SCHEDULE_FORMAT",
    "SCHEDULE_VERSION",
    "LAYOUT",
    "Policy",
    "Schedule",
    "parse_pba_log",
    "load_schedule",
    "read_lineage_rows",
    "write_lineage_log",
    "field_name",
]

#: The 15 PBA ops in the pinned order of docs/METHOD.md §1 (index k -> integers 2k, 2k+1, 30+2k, 31+2k).
OP_ORDER: tuple[str, ...] = (
    "Rotate", "TranslateX", "TranslateY", "Brightness", "Color",
    "Invert", "Sharpness", "Posterize", "ShearX", "Solarize",
    "ShearY", "Equalize", "AutoContrast", "Cutout", "Contrast",
)
NUM_OPS = len(OP_ORDER)          # 15
NUM_COPIES = 2                   # copies A and B of every op
NUM_SLOTS = NUM_COPIES * NUM_OPS  # 30 (op, prob, level) slots: copy A in op order, then copy B
POLICY_LEN = 2 * NUM_SLOTS       # 60 integers: (prob, level) per slot
PROB_MAX = 10                    # probability integer v -> p = v / 10
LEVEL_MAX = 9                    # magnitude level 0..9
NUM_LEVELS = LEVEL_MAX + 1       # 10
PROB, LEVEL = 0, 1               # field index inside a slot
#: the flat vector reshaped: ``v.reshape(LAYOUT_SHAPE)[copy, op, field]``
LAYOUT_SHAPE = (NUM_COPIES, NUM_OPS, 2)
#: inclusive upper bound of each of the 60 integers (even index: probability, odd: level)
UPPER = np.array([PROB_MAX if i % 2 == PROB else LEVEL_MAX for i in range(POLICY_LEN)],
                 dtype=np.int64)

SCHEDULE_FORMAT = "rolekd-schedule"
SCHEDULE_VERSION = 1
LAYOUT = ("pba-60: copy A op k -> [2k] prob 0..10, [2k+1] level 0..9; "
          "copy B -> [30+2k], [31+2k]")

_ROW_FIELDS = ("target_id", "clone_id", "target_epoch", "clone_epoch", "clone_config", "new_config")


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def flat_index(copy: int, op: int, field: int) -> int:
    """Index in the 60-int vector of ``field`` (:data:`PROB` 0 / :data:`LEVEL` 1) of op ``op``
    (0..14, :data:`OP_ORDER`) in copy ``copy`` (0 = A, 1 = B)."""
    return (copy * NUM_OPS + op) * 2 + field


def slot_op(slot):
    """Op index (0..14) of slot ``slot`` (0..29); works on ints, NumPy arrays and tensors."""
    return slot % NUM_OPS


def slot_probabilities(values) -> np.ndarray:
    """float64 ``[..., 30]`` firing probability (0..1) of each slot of policies ``[..., 60]``."""
    a = np.asarray(values)
    return a.reshape(*a.shape[:-1], NUM_SLOTS, 2)[..., PROB] / PROB_MAX


def slot_levels(values) -> np.ndarray:
    """``[..., 30]`` level (0..9) of each slot of policies ``[..., 60]``."""
    a = np.asarray(values)
    return a.reshape(*a.shape[:-1], NUM_SLOTS, 2)[..., LEVEL]


def field_name(i: int) -> str:
    """Human name of policy integer ``i``, e.g. ``field_name(17) == 'ShearX copy A level'``."""
    copy, rest = divmod(i, 2 * NUM_OPS)
    op, field = divmod(rest, 2)
    return f"{OP_ORDER[op]} copy {'AB'[copy]} {'prob' if field == PROB else 'level'}"


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def check_policy(values: Any, what: str = "policy") -> list[int]:
    """``values`` (60 integers, any sequence) as Python ints, or a ScheduleError naming the bad
    field, its value and the allowed range."""
    if isinstance(values, (str, bytes, Mapping)) or not hasattr(values, "__len__"):
        raise ScheduleError(f"{what} must be a list of {POLICY_LEN} integers, "
                            f"got {type(values).__name__}")
    if isinstance(values, np.ndarray) and values.ndim != 1:
        raise ScheduleError(f"{what} must be a flat list of {POLICY_LEN} integers, "
                            f"got an array of shape {values.shape}")
    if len(values) != POLICY_LEN:
        raise ScheduleError(f"{what} has {len(values)} integers, expected {POLICY_LEN}")
    out = []
    for i, v in enumerate(values):
        if not _is_int(v):
            raise ScheduleError(f"{what}[{i}] ({field_name(i)}) = {v!r} is not an integer")
        v = int(v)
        hi = int(UPPER[i])
        if not 0 <= v <= hi:
            raise ScheduleError(f"{what}[{i}] ({field_name(i)}) = {v} is out of range 0..{hi}")
        out.append(v)
    return out


# --------------------------------------------------------------------------------------------
# Policy
# --------------------------------------------------------------------------------------------
class _FrozenSequence:
    """Read-only sequence over the tuple ``_items()``; equal (and hashed) by its items, only to
    instances of the same class."""

    __slots__ = ()

    def _items(self) -> tuple:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self._items())

    def __iter__(self) -> Iterator:
        return iter(self._items())

    def __getitem__(self, i):
        return self._items()[i]

    def __eq__(self, other) -> bool:
        if type(other) is type(self):
            return self._items() == other._items()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._items())


class Policy(_FrozenSequence):
    """An immutable PBA policy: 60 validated integers (see module docstring for the layout)."""

    __slots__ = ("_v",)

    def __init__(self, values: Iterable[int]):
        if isinstance(values, Policy):
            v = values._v
        else:
            if not isinstance(values, (list, tuple, np.ndarray)) and not isinstance(
                    values, (str, bytes, Mapping)) and hasattr(values, "__iter__"):
                values = list(values)
            v = tuple(check_policy(values))
        object.__setattr__(self, "_v", v)

    def __setattr__(self, name, value):
        raise AttributeError("Policy is immutable")

    # --- constructors -----------------------------------------------------------------------
    @classmethod
    def zeros(cls) -> "Policy":
        """The all-zero policy (no op ever fires) — where PBA's search starts."""
        return cls([0] * POLICY_LEN)

    @classmethod
    def from_slots(cls, slots: Sequence[tuple[str, int, int]]) -> "Policy":
        """Inverse of :meth:`slots`: 30 ``(op_name, prob, level)``, copy A (op order) then copy B.

        The op names must follow :data:`OP_ORDER` in each copy.
        """
        slots = list(slots)
        if len(slots) != NUM_SLOTS:
            raise ScheduleError(f"from_slots needs {NUM_SLOTS} (op, prob, level) slots, "
                                f"got {len(slots)}")
        values: list[Any] = []
        for s, slot in enumerate(slots):
            try:
                name, prob, level = slot
            except (TypeError, ValueError):
                raise ScheduleError(f"slot {s} must be (op_name, prob, level), got {slot!r}") from None
            want = OP_ORDER[slot_op(s)]
            if name != want:
                raise ScheduleError(f"slot {s} op = {name!r}, expected {want!r} (OP_ORDER)")
            values += [prob, level]
        return cls(values)

    # --- views ------------------------------------------------------------------------------
    def as_list(self) -> list[int]:
        return list(self._v)

    def as_array(self) -> np.ndarray:
        return np.asarray(self._v, dtype=np.int32)

    def slots(self) -> list[tuple[str, int, int]]:
        """30 ``(op_name, prob 0..10, level 0..9)``: copy A in op order, then copy B."""
        return [(OP_ORDER[slot_op(s)], self._v[2 * s], self._v[2 * s + 1]) for s in range(NUM_SLOTS)]

    def describe(self) -> str:
        """Human summary, e.g. ``'Rotate p=0.3 L=4 | Cutout p=1.0 L=9, p=0.2 L=1'`` (active slots)."""
        parts = []
        for k, name in enumerate(OP_ORDER):
            act = []
            for copy in range(NUM_COPIES):
                p = self._v[flat_index(copy, k, PROB)]
                lvl = self._v[flat_index(copy, k, LEVEL)]
                if p > 0:
                    act.append(f"p={p / PROB_MAX:.1f} L={lvl}")
            if act:
                parts.append(f"{name} " + ", ".join(act))
        return " | ".join(parts) if parts else "(no ops: all probabilities 0)"

    # --- dunder -----------------------------------------------------------------------------
    def _items(self) -> tuple[int, ...]:
        return self._v

    def __repr__(self) -> str:
        return f"Policy({list(self._v)})"

    def __reduce__(self):
        return (Policy, (list(self._v),))


def _policy_from_checked(v: tuple[int, ...]) -> Policy:
    p = Policy.__new__(Policy)
    object.__setattr__(p, "_v", v)
    return p


def _as_policy(values: Any, what: str = "policy") -> Policy:
    if isinstance(values, Policy):
        return values
    return _policy_from_checked(tuple(check_policy(values, what)))


# --------------------------------------------------------------------------------------------
# Schedule
# --------------------------------------------------------------------------------------------
def _rle(policies: Sequence[Policy]) -> list[tuple[Policy, int]]:
    segs: list[list] = []
    for p in policies:
        if segs and segs[-1][0] == p:
            segs[-1][1] += 1
        else:
            segs.append([p, 1])
    return [(p, n) for p, n in segs]


class Schedule(_FrozenSequence):
    """One :class:`Policy` per epoch (immutable, at least one epoch).

    ``segments`` are ``(policy, length)`` runs. When the schedule was rebuilt from a lineage log
    they are PBA's ``parse_log`` segments (two adjacent segments may even hold equal policies);
    otherwise they are runs of equal consecutive policies.
    """

    __slots__ = ("_policies", "_segments", "_source")

    def __init__(self, policies: Iterable[Any], *, segments: Sequence[tuple[Any, int]] | None = None,
                 source: Mapping[str, Any] | None = None):
        if segments is not None:
            segs = []
            for i, seg in enumerate(segments):
                p, n = seg
                if not _is_int(n) or int(n) <= 0:
                    raise ScheduleError(f"segment {i} length = {n!r} must be a positive integer")
                segs.append((_as_policy(p, f"segment {i} policy"), int(n)))
            pols = tuple(p for p, n in segs for _ in range(n))
            if policies is not None:
                given = tuple(_as_policy(p, f"epoch {e} policy") for e, p in enumerate(policies))
                if given != pols:
                    raise ScheduleError("segments do not expand to the given per-epoch policies")
        else:
            if policies is None or isinstance(policies, (Policy, str, bytes, Mapping)) \
                    or not hasattr(policies, "__iter__"):
                raise ScheduleError("Schedule needs a list of policies (one per epoch)")
            pols = tuple(_as_policy(p, f"epoch {e} policy") for e, p in enumerate(policies))
            segs = None
        if not pols:
            raise ScheduleError("a schedule needs at least 1 epoch, got 0 policies")
        self._policies = pols
        self._segments = tuple(segs) if segs is not None else tuple(_rle(pols))
        self._source = dict(source) if source else {}

    # --- construction -----------------------------------------------------------------------
    @classmethod
    def from_segments(cls, segments: Sequence[tuple[Any, int]], *,
                      source: Mapping[str, Any] | None = None) -> "Schedule":
        return cls(None, segments=segments, source=source)

    @classmethod
    def constant(cls, policy: Any, epochs: int) -> "Schedule":
        return cls.from_segments([(policy, epochs)])

    # --- views ------------------------------------------------------------------------------
    @property
    def epochs(self) -> int:
        return len(self._policies)

    @property
    def policies(self) -> tuple[Policy, ...]:
        return self._policies

    @property
    def segments(self) -> list[tuple[Policy, int]]:
        return list(self._segments)

    @property
    def segment_lengths(self) -> list[int]:
        return [n for _, n in self._segments]

    @property
    def source(self) -> dict:
        return dict(self._source)

    def policy_for_epoch(self, epoch: int) -> Policy:
        """The policy of ``epoch`` (0-based). Out of range is an error, never silent reuse."""
        if not _is_int(epoch) or not 0 <= int(epoch) < self.epochs:
            raise ScheduleError(f"epoch {epoch!r} is outside the schedule's epochs 0..{self.epochs - 1} "
                                f"(use stretch() or --epochs to match the training length)")
        return self._policies[int(epoch)]

    def as_array(self) -> np.ndarray:
        """int32 ``[epochs, 60]``."""
        return np.asarray([p._v for p in self._policies], dtype=np.int32).reshape(self.epochs, POLICY_LEN)

    def _items(self) -> tuple[Policy, ...]:
        return self._policies

    def __repr__(self) -> str:
        return f"Schedule(epochs={self.epochs}, segments={self.segment_lengths})"

    # --- transforms -------------------------------------------------------------------------
    def stretch(self, epochs: int, *, allow_uneven: bool = False) -> "Schedule":
        """A schedule of ``epochs`` epochs.

        If ``epochs`` is an integer multiple ``k`` of :attr:`epochs`, each policy is repeated ``k``
        times (PBA's multiplier). Otherwise raise, unless ``allow_uneven`` — then epoch ``e`` gets
        policy ``floor(e * len / epochs)``.
        """
        if not _is_int(epochs) or int(epochs) < 1:
            raise ScheduleError(f"stretch epochs = {epochs!r} must be a positive integer")
        epochs = int(epochs)
        n = self.epochs
        if epochs == n:
            return self
        src = dict(self._source)
        if epochs % n == 0:
            k = epochs // n
            src["stretched"] = {"from_epochs": n, "to_epochs": epochs, "multiplier": k}
            return Schedule.from_segments([(p, m * k) for p, m in self._segments], source=src)
        if not allow_uneven:
            raise ScheduleError(f"cannot stretch a {n}-epoch schedule to {epochs} epochs: {epochs} is not "
                                f"an integer multiple of {n} (pass allow_uneven=True to map epoch e -> "
                                f"policy floor(e*{n}/{epochs}))")
        src["stretched"] = {"from_epochs": n, "to_epochs": epochs, "uneven": True}
        return Schedule([self._policies[(e * n) // epochs] for e in range(epochs)], source=src)

    # --- JSON -------------------------------------------------------------------------------
    def to_json(self) -> dict:
        """Our versioned JSON document (a dict; ``json.dumps`` it or use :meth:`save`)."""
        src = dict(self._source)
        src["segment_lengths"] = self.segment_lengths
        return {
            "format": SCHEDULE_FORMAT,
            "version": SCHEDULE_VERSION,
            "op_order": list(OP_ORDER),
            "layout": LAYOUT,
            "epochs": [list(p._v) for p in self._policies],
            "source": _jsonable(src),
        }

    def dumps(self) -> str:
        """:meth:`to_json` as text: compact values, one line per epoch policy (readable diffs)."""
        doc = self.to_json()
        epochs = doc.pop("epochs")
        head = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in doc.items())
        body = ",\n".join("    " + json.dumps(e, separators=(",", ":")) for e in epochs)
        return "{\n" + head + ',\n  "epochs": [\n' + body + "\n  ]\n}\n"

    def save(self, path: str | os.PathLike) -> None:
        """Write :meth:`to_json` to ``path`` atomically."""
        atomic_write_text(path, self.dumps())

    @classmethod
    def from_json(cls, doc: Any, *, where: str = "schedule JSON") -> "Schedule":
        """Parse our JSON document (a dict, or its text). ``where`` prefixes error messages."""
        if isinstance(doc, (str, bytes)):
            try:
                doc = json.loads(doc)
            except json.JSONDecodeError as e:
                raise ScheduleError(f"{where}: invalid or truncated JSON at line {e.lineno} "
                                    f"column {e.colno}: {e.msg}") from None
        if not isinstance(doc, Mapping):
            raise ScheduleError(f"{where}: expected a JSON object, got {type(doc).__name__}")
        fmt = doc.get("format")
        if fmt != SCHEDULE_FORMAT:
            raise ScheduleError(f"{where}: field 'format' = {fmt!r}, expected {SCHEDULE_FORMAT!r}")
        ver = doc.get("version")
        if ver != SCHEDULE_VERSION:
            raise ScheduleError(f"{where}: field 'version' = {ver!r} is not supported "
                                f"(this reader knows version {SCHEDULE_VERSION})")
        layout = doc.get("layout", LAYOUT)
        if layout != LAYOUT:
            raise ScheduleError(f"{where}: field 'layout' = {layout!r} is not supported "
                                f"(expected {LAYOUT!r})")
        perm = _op_order_permutation(doc.get("op_order"), where)
        epochs = doc.get("epochs")
        if not isinstance(epochs, list):
            raise ScheduleError(f"{where}: field 'epochs' must be a list of {POLICY_LEN}-int lists, "
                                f"got {type(epochs).__name__}")
        if not epochs:
            raise ScheduleError(f"{where}: field 'epochs' is empty (a schedule needs at least 1 epoch)")
        pols = []
        for e, vals in enumerate(epochs):
            what = f"{where}: epochs[{e}]"
            if perm is not None:
                if not isinstance(vals, list) or len(vals) != POLICY_LEN:
                    check_policy(vals, what)  # raises with the right message
                vals = _remap(vals, perm)
                what += " (remapped to OP_ORDER)"
            pols.append(_policy_from_checked(tuple(check_policy(vals, what))))
        source = doc.get("source") or {}
        if not isinstance(source, Mapping):
            raise ScheduleError(f"{where}: field 'source' must be an object, got {type(source).__name__}")
        segs = None
        lens = source.get("segment_lengths")
        if isinstance(lens, list) and lens and all(_is_int(n) and n > 0 for n in lens) \
                and sum(lens) == len(pols):
            # Keep parse_log's segment boundaries when they agree with the per-epoch policies.
            segs, e0, ok = [], 0, True
            for n in lens:
                run = pols[e0:e0 + n]
                if any(p != run[0] for p in run):
                    ok = False
                    break
                segs.append((run[0], n))
                e0 += n
            if not ok:
                segs = None
        if segs is not None:
            return cls.from_segments(segs, source=source)
        src = dict(source)
        src.pop("segment_lengths", None)
        return cls(pols, source=src)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


def _op_order_permutation(order: Any, where: str) -> list[int] | None:
    """None if ``order`` equals OP_ORDER, else ``perm`` with file op j == OP_ORDER[perm[j]]."""
    if order is None:
        raise ScheduleError(f"{where}: field 'op_order' is missing, so the ops of the "
                            f"{POLICY_LEN} integers cannot be decided")
    if not isinstance(order, list) or not all(isinstance(n, str) for n in order):
        raise ScheduleError(f"{where}: field 'op_order' must be a list of {NUM_OPS} op names")
    if tuple(order) == OP_ORDER:
        return None
    if len(order) != NUM_OPS or sorted(order) != sorted(OP_ORDER):
        unknown = sorted(set(order) - set(OP_ORDER))
        missing = sorted(set(OP_ORDER) - set(order))
        dup = sorted({n for n in order if order.count(n) > 1})
        detail = "; ".join(x for x in (
            f"unknown {unknown}" if unknown else "",
            f"missing {missing}" if missing else "",
            f"duplicated {dup}" if dup else "") if x)
        raise ScheduleError(f"{where}: field 'op_order' is not a permutation of our "
                            f"{NUM_OPS} ops ({detail or f'{len(order)} names'})")
    return [OP_ORDER.index(n) for n in order]


def _remap(vals: Sequence[Any], perm: Sequence[int]) -> list[Any]:
    out: list[Any] = [None] * POLICY_LEN
    for j, k in enumerate(perm):
        for copy in range(NUM_COPIES):
            for field in (PROB, LEVEL):
                out[flat_index(copy, k, field)] = vals[flat_index(copy, j, field)]
    return out


# --------------------------------------------------------------------------------------------
# PBA lineage logs
# --------------------------------------------------------------------------------------------
def _config_policy(cfg: Any, what: str) -> Policy:
    if isinstance(cfg, Mapping):
        if "hp_policy" not in cfg:
            raise ScheduleError(f"{what}: config dict has no 'hp_policy' key")
        cfg = cfg["hp_policy"]
        what += ".hp_policy"
    elif isinstance(cfg, Policy):
        return cfg
    elif not isinstance(cfg, (list, tuple, np.ndarray)):
        raise ScheduleError(f"{what}: expected a {POLICY_LEN}-int list or a dict with 'hp_policy', "
                            f"got {type(cfg).__name__}")
    return _policy_from_checked(tuple(check_policy(cfg, what)))


def _check_row(row: Any, where: str) -> tuple[str, str, int, int, Policy, Policy]:
    if not isinstance(row, (list, tuple)):
        raise ScheduleError(f"{where}: expected a row [target_id, clone_id, target_epoch, clone_epoch, "
                            f"clone_config, new_config], got {type(row).__name__}")
    if len(row) != 6:
        raise ScheduleError(f"{where}: row has {len(row)} fields, expected 6 "
                            f"({', '.join(_ROW_FIELDS)})")
    tid, cid, te, ce, cc, nc = row
    for name, v in (("target_id", tid), ("clone_id", cid)):
        if not (isinstance(v, str) or _is_int(v)):
            raise ScheduleError(f"{where}: field {name} = {v!r} must be a trial id (string or int)")
    for name, v in (("target_epoch", te), ("clone_epoch", ce)):
        if not _is_int(v) or int(v) < 0:
            raise ScheduleError(f"{where}: field {name} = {v!r} must be a non-negative integer")
    return (str(tid), str(cid), int(te), int(ce),
            _config_policy(cc, f"{where}: field clone_config"),
            _config_policy(nc, f"{where}: field new_config"))


def parse_pba_log(rows: Sequence[Any], epochs: int, *, train_epochs: int | None = None,
                  where: Sequence[str] | None = None, source: Mapping[str, Any] | None = None
                  ) -> Schedule:
    """Rebuild the per-epoch schedule from lineage rows, exactly as PBA's ``parse_log``.

    ``rows`` are ``[target_id, clone_id, target_epoch, clone_epoch, clone_config, new_config]``
    (configs: 60-int lists or dicts holding ``hp_policy``); ``epochs`` is the search's epoch count.

    1. Drop every row up to and including the last ``i`` with ``row[i].target != row[i+1].clone``
       (a trial's log starts with the copied log of its clone's ancestors).
    2. Segment 0 = ``row0.clone_config`` for ``row0.clone_epoch`` epochs; segment ``i`` =
       ``row[i].new_config`` for ``row[i+1].clone_epoch - row[i].clone_epoch`` epochs; the last
       segment runs to ``epochs``. Every length must be positive (they sum to ``epochs`` by
       construction, PBA's assert).
    3. With ``train_epochs`` = k * ``epochs`` each epoch's policy is repeated k times.

    ``where`` optionally names each row for error messages (e.g. ``"file.txt: line 3"``).
    """
    labels = list(where) if where is not None else [f"row {i}" for i in range(len(rows))]
    if not _is_int(epochs) or int(epochs) < 1:
        raise ScheduleError(f"search epochs = {epochs!r} must be a positive integer")
    epochs = int(epochs)
    prefix = labels[0].split(": line")[0] + ": " if labels and ": line" in labels[0] else ""
    if not rows:
        raise ScheduleError(f"{prefix}broken lineage: the log has no rows")
    checked = [_check_row(r, labels[i]) for i, r in enumerate(rows)]

    last_break = None
    for i in range(len(checked) - 1):
        if checked[i][0] != checked[i + 1][1]:
            last_break = i
    start = 0 if last_break is None else last_break + 1
    kept = checked[start:]
    kept_labels = labels[start:]

    segs: list[tuple[Policy, int]] = [(kept[0][4], kept[0][3])]
    seg_where = [f"{kept_labels[0]}: field clone_epoch (first segment length)"]
    for i in range(len(kept) - 1):
        segs.append((kept[i][5], kept[i + 1][3] - kept[i][3]))
        seg_where.append(f"{kept_labels[i + 1]}: field clone_epoch ({kept[i + 1][3]} - "
                         f"{kept[i][3]} of the previous row)")
    segs.append((kept[-1][5], epochs - kept[-1][3]))
    seg_where.append(f"{kept_labels[-1]}: field clone_epoch ({epochs} epochs - {kept[-1][3]}; "
                     f"is --epochs the search's epoch count?)")
    for (p, n), w in zip(segs, seg_where):
        if n <= 0:
            raise ScheduleError(f"{w}: broken lineage: segment length {n} is not positive")
    src = dict(source or {})
    src.update({"search_epochs": epochs, "rows": len(rows), "rows_dropped": start,
                "segment_lengths": [n for _, n in segs]})
    sched = Schedule.from_segments(segs, source=src)
    if train_epochs is not None and train_epochs != epochs:
        sched = sched.stretch(train_epochs)
    return sched


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------
def _parse_row_text(text: str, where: str) -> tuple[Any, str]:
    """One row line: JSON first (Ray-Tune), then a Python literal (PBA). Returns (row, flavour)."""
    try:
        return json.loads(text), "ray-tune"
    except (json.JSONDecodeError, RecursionError):
        pass
    try:
        return ast.literal_eval(text), "pba"
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ScheduleError(f"{where}: not a valid log row (neither JSON nor a Python literal; "
                            f"truncated?): {msg}") from None


def read_lineage_rows(path: str | os.PathLike) -> tuple[list[Any], list[str], str]:
    """Read a PBA / Ray-Tune lineage log: ``(rows, labels, flavour)``.

    Accepts one row per line (both flavours) or a whole-file list of rows.
    """
    text = _read_text(path)
    return _rows_from_text(text, str(path))


def _rows_from_text(text: str, name: str) -> tuple[list[Any], list[str], str]:
    lines = [(n + 1, ln.strip()) for n, ln in enumerate(text.splitlines()) if ln.strip()]
    if not lines:
        raise ScheduleError(f"{name}: the file is empty")
    # A whole-file list of rows (one literal, possibly spanning lines)?
    try:
        whole, flavour = _parse_row_text(text.strip(), name)
    except ScheduleError:
        whole = None
    if isinstance(whole, list) and whole and isinstance(whole[0], (list, tuple)):
        return list(whole), [f"{name}: row {i}" for i in range(len(whole))], flavour
    # One row per line (both PBA's published files and Ray-Tune's pbt_policy logs).
    rows, labels, flavours = [], [], set()
    for n, ln in lines:
        where = f"{name}: line {n}"
        row, flavour = _parse_row_text(ln, where)
        rows.append(row)
        labels.append(where)
        flavours.add(flavour)
    return rows, labels, ("pba" if "pba" in flavours else "ray-tune")


def _read_text(path: str | os.PathLike) -> str:
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ScheduleError(f"{p}: schedule file not found") from None
    except IsADirectoryError:
        raise ScheduleError(f"{p}: is a directory, expected a schedule file") from None
    except OSError as e:
        raise ScheduleError(f"{p}: cannot read schedule file ({e.strerror or e})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ScheduleError(f"{p}: not a text schedule file (byte {e.start} is not UTF-8)") from None


def load_schedule(path: str | os.PathLike, epochs: int | None = None, *,
                  train_epochs: int | None = None, allow_uneven: bool = False) -> Schedule:
    """Load a schedule, auto-detecting the format.

    * our JSON: ``epochs`` (optional) is the wanted length — an integer multiple stretches,
      anything else is an error (unless ``allow_uneven``);
    * PBA published text / Ray-Tune ``pbt_policy_<id>.txt``: ``epochs`` is **required** and is the
      search's epoch count; ``train_epochs`` (optional) stretches the result by an integer
      multiplier.
    """
    name = str(path)
    text = _read_text(path)
    head = text.lstrip()
    if not head:
        raise ScheduleError(f"{name}: the file is empty")
    if head[0] == "{":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise ScheduleError(f"{name}: invalid or truncated JSON at line {e.lineno} column {e.colno}: "
                                f"{e.msg}") from None
        if isinstance(doc, Mapping) and "format" not in doc and "hp_policy" in doc:
            raise ScheduleError(f"{name}: unknown format (a single config dict, not a schedule or a "
                                f"lineage log)")
        if isinstance(doc, Mapping) and "format" not in doc:
            raise ScheduleError(f"{name}: unknown format (JSON object without "
                                f"'format': {SCHEDULE_FORMAT!r})")
        sched = Schedule.from_json(doc, where=name)
        want = train_epochs if train_epochs is not None else epochs
        if want is not None and want != sched.epochs:
            try:
                sched = sched.stretch(want, allow_uneven=allow_uneven)
            except ScheduleError as e:
                raise ScheduleError(f"{name}: {e}") from None
        return sched
    if head[0] != "[":
        raise ScheduleError(f"{name}: unknown format (expected our JSON schedule, a PBA schedule "
                            f"or a Ray-Tune pbt_policy log; the file starts with {head[:20]!r})")
    if epochs is None:
        raise ScheduleError(f"{name}: PBA/Ray-Tune logs need --epochs N (the search's epoch count)")
    rows, labels, flavour = _rows_from_text(text, name)
    src = {"file": os.path.basename(name), "flavour": flavour}
    try:
        return parse_pba_log(rows, epochs, train_epochs=train_epochs, where=labels, source=src)
    except ScheduleError as e:
        msg = str(e)
        if not msg.startswith(name) and name not in msg:
            msg = f"{name}: {msg}"
        raise ScheduleError(msg) from None


def _literal_safe(obj: Any) -> Any:
    """JSON values that are also Python literals (so PBA's ``ast.literal_eval`` reads the line)."""
    if isinstance(obj, Policy):
        return obj.as_list()
    if isinstance(obj, Mapping):
        return {str(k): _literal_safe(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [_literal_safe(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return int(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else str(f)
    if obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return str(obj)


def _config_dict(cfg: Any, where: str) -> dict:
    if isinstance(cfg, Policy):
        return {"hp_policy": cfg.as_list()}
    if isinstance(cfg, Mapping):
        pol = _config_policy(cfg, where)
        out = _literal_safe(dict(cfg))
        out["hp_policy"] = pol.as_list()
        return out
    return {"hp_policy": _config_policy(cfg, where).as_list()}


def write_lineage_log(rows: Sequence[Any], path: str | os.PathLike) -> None:
    """Write lineage rows as a Ray-Tune ``pbt_policy_<id>.txt`` (JSON lines), atomically.

    Each row ``[target_id, clone_id, target_epoch, clone_epoch, clone_config, new_config]``
    becomes one JSON line whose configs are dicts holding ``hp_policy`` (a bare 60-int list or a
    :class:`Policy` is wrapped as ``{"hp_policy": [...]}``; other config keys are kept). Values are
    kept Python-literal-safe (bool → int, None dropped) so both :func:`load_schedule` and PBA's
    ``ast.literal_eval``-based ``parse_log`` read the file back. Trial ids are written as strings.
    """
    lines = []
    for i, row in enumerate(rows):
        where = f"row {i}"
        _check_row(row, where)
        tid, cid, te, ce, cc, nc = row
        out = [str(tid), str(cid), int(te), int(ce),
               _config_dict(cc, f"{where}: field clone_config"),
               _config_dict(nc, f"{where}: field new_config")]
        lines.append(json.dumps(out))
    if not lines:
        raise ScheduleError("write_lineage_log: no rows to write")
    atomic_write_text(path, "\n".join(lines) + "\n")
