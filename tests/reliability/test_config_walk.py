"""Every config key × every kind of invalid value, through the real ``train.py`` entry point.

The keys are enumerated from the config dataclasses (:func:`rolekd_tf.config.config_fields`), so a
key added later is covered without touching this file; the invalid values are derived from the
key's type and its declared Range / Choice: a wrong type, a bool where a number belongs, NaN, +inf,
-inf, just below / just above the range, a huge integer (10**30), a non-integer for an integer
key, entries of the wrong kind in lists, unordered / repeated / empty lists where that matters,
and null for a key that needs a value.

Each invalid value must give exit code 2, exactly ONE stderr line ``error: …`` that names the key,
no traceback, and create nothing (the command runs with the default ``--out runs/<name>`` in an
empty folder). All cases run in one batch process (``_batch_cli.py``: the real ``main`` and error
wrapper, TensorFlow imported once); each key is then its own test that inspects the results.
"""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from rolekd_tf.config import Config
from tests.reliability._util import TINY, cli_env, error_problems, snapshot

BATCH = Path(__file__).resolve().parent / "_batch_cli.py"
HUGE = "1" + "0" * 30  # 10**30: overflows int64 and every range


def _ann(f: dataclasses.Field) -> str:
    return str(f.type).replace(" ", "")


def _y(x) -> str:
    """A number as YAML text (``.nan``/``.inf`` spelled the YAML way)."""
    if isinstance(x, float):
        if x != x:
            return ".nan"
        if x in (float("inf"), float("-inf")):
            return ".inf" if x > 0 else "-.inf"
        return repr(x)
    return str(x)


def walk_keys() -> list[tuple[str, dataclasses.Field]]:
    """Every key of :class:`Config` (sections are the dataclass-valued fields), straight from the
    dataclasses — nothing to update when a key is added."""
    keys = []
    cfg = Config()
    for f in dataclasses.fields(Config):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            keys += [(f"{f.name}.{g.name}", g) for g in dataclasses.fields(value)]
        else:
            keys.append((f.name, f))
    return keys


def _outside(rng, integer: bool) -> list:
    """Values just below and just above ``rng``."""
    if integer:
        return [int(rng.lo) - 1, int(rng.hi) + 1]
    eps = lambda v: 1e-6 * max(1.0, abs(v))  # noqa: E731
    lo = rng.lo if rng.lo_open else rng.lo - eps(rng.lo)
    hi = rng.hi if rng.hi_open else rng.hi + eps(rng.hi)
    return [float(lo), float(hi)]


def _not_in(ch) -> list:
    ints = [v for v in ch.values if isinstance(v, int)]
    if not ints:
        return ["nonsense"]
    gaps = [v for v in range(min(ints), max(ints)) if v not in ch.values][:1]
    return [min(ints) - 1, max(ints) + 1] + gaps


def invalid_values(f: dataclasses.Field) -> list[str]:
    """YAML texts that must be refused for field ``f`` (derived from its type and range)."""
    ann = _ann(f)
    rng, ch = f.metadata.get("range"), f.metadata.get("choices")
    vals: list[str] = []
    if "None" not in ann:
        vals.append("null")
    if ann.startswith("list"):
        kind = ann[5:-1]
        vals += ["notalist", "{a: 1}", "[[1]]"]
        if kind in ("int", "float"):
            vals += ["[abc]", "[true]", "[.nan]", "[.inf]", "[-.inf]", f"[{HUGE}]", "3"]
            if kind == "int":
                vals.append("[1.5]")
            if rng is not None:
                vals += [f"[{_y(v)}]" for v in _outside(rng, kind == "int")]
                inside = [rng.lo + (rng.hi - rng.lo) * q for q in (0.25, 0.75)]
                if kind == "int":
                    inside = [int(rng.lo), int(rng.lo) + 1]
                if f.metadata.get("increasing"):
                    vals.append(f"[{_y(inside[1])}, {_y(inside[0])}]")
                    vals.append(f"[{_y(inside[0])}, {_y(inside[0])}]")
                if f.metadata.get("unique"):
                    vals.append(f"[{_y(inside[0])}, {_y(inside[0])}]")
                if f.metadata.get("nonempty"):
                    vals.append("[]")
            if ch is not None:
                vals += [f"[{_y(v)}]" for v in _not_in(ch)]
        elif kind == "str":
            vals += ["[3]", "[true]", "[.nan]"]
            if ch is not None:
                vals += ["[nonsense]", f"{ch.values[0]}"]  # a bare string is not a list
            else:
                vals.append("[no_equals_sign]")  # pipeline.student_set: section.key=value entries
        return vals
    if ann.startswith("bool"):
        return vals + ["maybe", "2", "0", ".nan", "[true]"]
    if ann.startswith("int") or ann.startswith("float"):
        integer = ann.startswith("int")
        vals += ["abc", "true", "false", ".nan", ".inf", "-.inf", HUGE, f"-{HUGE}", "[1]", "{a: 1}"]
        if integer:
            vals += ["1.5", "2.0"]
        if rng is not None:
            vals += [_y(v) for v in _outside(rng, integer)]
        if ch is not None:
            vals += [_y(v) for v in _not_in(ch)]
        return vals
    if ann.startswith("str"):
        vals += ["3", "[a]", "{a: 1}", "true"]
        if ch is not None:
            vals.append("nonsense")
        return vals
    # Any (train.jit_compile): a fixed set of words / booleans
    return vals + ["sometimes", "2", ".nan", "[true]"]


KEYS = walk_keys()
CASES = [(key, i, text) for key, f in KEYS for i, text in enumerate(invalid_values(f))]


@pytest.fixture(scope="module")
def walked(tmp_path_factory):
    base = tmp_path_factory.mktemp("walk")
    cache = base / "cache"
    jobs, dirs = [], {}
    for key, i, text in CASES:
        d = base / "cases" / f"{key}-{i}"
        d.mkdir(parents=True)
        dirs[(key, i)] = d
        # TINY first: on a build that accepts the bad value, the run stays short
        jobs.append({"id": f"{key}#{i}", "tool": "train", "cwd": str(d),
                     "args": [*TINY, "--set", f"{key}={text}"]})
    jf, rf = base / "jobs.json", base / "results.json"
    jf.write_text(json.dumps(jobs))
    try:
        subprocess.run([sys.executable, str(BATCH), str(jf), str(rf)], env=cli_env(ROLEKD_CACHE_DIR=cache),
                       cwd=str(base), capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        pass  # unfinished jobs are failures below
    results = json.loads(rf.read_text()) if rf.exists() else {}
    created = {k: sorted(snapshot(d)) for k, d in dirs.items()}
    return {"results": results, "created": created, "cache_created": cache.exists()}


def test_every_key_is_walked_and_every_number_has_a_range():
    from rolekd_tf.config import config_fields

    assert [k for k, _ in KEYS] == [k for k, _, _ in config_fields()]
    assert len(KEYS) >= 40
    for key, f in KEYS:
        ann = _ann(f)
        if any(t in ann for t in ("int", "float")):
            assert f.metadata.get("range") or f.metadata.get("choices"), f"{key} has no declared range"
        assert invalid_values(f), key


def test_docs_table_is_generated_from_the_ranges():
    from rolekd_tf.config import ranges_markdown

    doc = (Path(__file__).resolve().parents[2] / "docs" / "CONFIG.md").read_text(encoding="utf-8")
    assert ranges_markdown() in doc, "docs/CONFIG.md is stale: paste rolekd_tf.config.ranges_markdown()"


@pytest.mark.parametrize("key", [k for k, _ in KEYS])
def test_invalid_values_are_one_line_exit_2_and_create_nothing(walked, key):
    problems = []
    for k, i, text in CASES:
        if k != key:
            continue
        r = walked["results"].get(f"{key}#{i}")
        if r is None:
            problems.append(f"{key}={text}: did not finish (accepted and started training?)")
            continue
        p = subprocess.CompletedProcess([], r["rc"], r["stdout"], r["stderr"])
        bad = error_problems(p, key)
        if p.returncode != 2:
            bad.append(f"exit code {p.returncode}")
        if walked["created"][(key, i)]:
            bad.append(f"created {walked['created'][(key, i)][:3]}")
        if bad:
            bad = [b for b in bad if not b.startswith("rc=")]
            problems.append(f"{key}={text}: {bad} stderr={r['stderr'].strip()[-200:]!r}")
    assert not walked["cache_created"], "a refused command wrote to the data cache"
    assert not problems, "\n".join(problems)
