"""Typed records of the export: the plan ``build_export_view`` hands to the passes, and what each
pass reports. Frozen dataclasses; :class:`Record` adds read-only ``rec["field"]`` / ``rec.get``
access so report code can treat a record like the JSON object it becomes (:meth:`Record.as_dict`).
"""
from __future__ import annotations

import dataclasses

import numpy as np


class Record:
    """Read-only mapping-style access to a dataclass's fields; ``key in rec`` means the field
    exists and is set (not None), as a key present in the JSON object."""

    def __getitem__(self, key: str):
        if key not in {f.name for f in dataclasses.fields(self)}:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default=None):
        v = getattr(self, key, None) if key in {f.name for f in dataclasses.fields(self)} else None
        return default if v is None else v

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    def as_dict(self) -> dict:
        """The set fields (None omitted), arrays as lists: what ``report.json`` stores."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is not None:
                out[f.name] = _plain(v)
        return out


def _plain(v):
    if isinstance(v, Record):
        return v.as_dict()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    return v
