"""Our int8 TFLite files vs tfmot's int8 TFLite of the same ResNet-20, side by side in one process.

Usage (main venv; the tfmot side runs in a venv with tfmot + tf_keras, see below)::

    python benchmarks/tfmot_vs_ours.py \
        --ours teacher_fp=RUN_DIR [--ours NAME=RUN_DIR …] \
        --tfmot-dir DIR [--tfmot-python VENV/bin/python --tfmot-config configs/quickstart.yaml
                         --tfmot-epochs 6 --tfmot-qat-epochs 2] \
        [--rounds 7 --repeats 100] [--results-md benchmarks/results/tfmot_vs_ours.md]

Issue 21 item 7 / issue 22 item 3: target "our int8 file ≤ 1.0× the latency and ≤ 1.0× the bytes of
tfmot's int8 TFLite of the same architecture, on the same machine in one run", accuracy beside it.

* Ours: each ``RUN_DIR`` is a rolekd_tf run directory (``config.yaml`` + ``model.keras``, e.g. one
  written by ``benchmarks/export.py``); its ``export/model_int8.tflite`` is used, exported first
  with ``rolekd_tf.export.export_run`` if missing. The first ``--ours`` run fixes the data.
* tfmot: ``DIR/model_int8.tflite`` + ``DIR/results.json`` written by ``benchmarks/tfmot_baseline.py``
  (tfmot 8-bit QAT of the tf_keras ResNet-20). If missing and ``--tfmot-python`` is given, that script
  is run first in that interpreter (tfmot 0.8 needs tf_keras, which the main venv does not have)
  on the SAME data as the first ``--ours`` run (dataset, split sizes and seed passed as ``--set``).
  The data settings recorded in ``results.json`` must match, else the script stops.
* Same images: every file is evaluated on the first run's holdout split (pixels → each file's own
  input convention: uint8 pixels for ours, normalised + int8-quantised for tfmot's and for ours
  exported with ``--int8-input normalised``, read off its report.json).
* Latency: LiteRT (``ai_edge_litert``) interpreters, ``num_threads=1``, all files loaded in this
  process; ``--rounds`` rounds, each timing ``--repeats`` single-image invokes of every file in a
  rotated order (interleaved, so load changes hit all files alike); median and IQR of all invokes,
  and the per-round ratio ours/tfmot. Load average recorded at start and end.
* Bytes: total, and an anatomy of each flatbuffer (constant data by role, quantisation vectors,
  names, metadata, signatures, ops, tensors), plus tfmot's file run through our ``compact_model``
  (what it would weigh stripped like ours).
* ``--sections``: where the time goes — each file also timed as copies cut after every stem op,
  after the last block and after every tail op (differences of interleaved medians, µs).
* ``--what-if`` / ``--int8-logits NAME=RUN_DIR``: edited copies of our files (``what_if_*``:
  one stem CONCATENATION; int16 logits with an int8 pool; and, for files exported before it
  existed, the export's own subsample pass), each with its agreement with the file it was made
  from. The ``what_if_*`` edits measure a proposed exporter change; they are not what it writes.
* End-to-end: each file is also timed from one uint8 image to float logits, the caller's numpy
  work included (tfmot: normalise, quantise to int8, dequantise the int8 logits; ours: hand over
  the uint8 pixels, or normalise and quantise for ``--int8-input normalised``), in a second set of
  interleaved rounds.

The tfmot venv (not the project's): ``python3 -m venv V && V/bin/pip install tensorflow==2.21.0
tf-keras==2.21.0 tensorflow-model-optimization keras==3.15.1 ai-edge-litert pyyaml pillow
scikit-learn``; rolekd_tf is found through this checkout (``sys.path``).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from rolekd_tf.export.flatbuf import TENSOR_TYPES  # noqa: E402  (schema TensorType enum → name)
from rolekd_tf.fileio import atomic_write_json  # noqa: E402

WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")


# ----------------------------------------------------------------------------- flatbuffer anatomy

def _fbu():
    from ai_edge_litert.tools import flatbuffer_utils as fbu  # LiteRT's own copy: no TF import needed

    return fbu


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def _load(blob: bytes):
    return _fbu().convert_bytearray_to_object(bytearray(blob))


def _size(model) -> int:
    return len(_fbu().convert_object_to_bytearray(model))


def _opnames(model) -> list[str]:
    names = {v: k for k, v in vars(_schema().BuiltinOperator).items() if not k.startswith("_")}
    return [names.get(max(c.builtinCode, c.deprecatedBuiltinCode), "?") for c in model.operatorCodes]


def _name(b) -> str:
    return b.decode() if isinstance(b, (bytes, bytearray)) else str(b)


def anatomy(blob: bytes) -> dict:
    """What a .tflite flatbuffer holds: constant bytes by role, quantisation vector entries,
    name/metadata/signature bytes, ops by type, tensors by type. All counts read from the file."""
    m = _load(blob)
    ops = _opnames(m)
    out = {"bytes": len(blob), "ops": Counter(), "tensors": Counter(), "const": Counter(),
           "const_by_dtype": Counter(), "quant": Counter(), "names_bytes": 0, "names": 0,
           "shape_signatures": 0, "metadata": {}, "signature_defs": len(m.signatureDefs or []),
           "description": len(m.description or b""), "buffers": len(m.buffers or []),
           "subgraphs": len(m.subgraphs), "io": []}
    role = {}  # (subgraph, tensor) → role of the constant
    for si, g in enumerate(m.subgraphs):
        for op in g.operators:
            name = ops[op.opcodeIndex]
            out["ops"][name] += 1
            for pos, ti in enumerate(op.inputs):
                if ti < 0:
                    continue
                if name in WEIGHTED_OPS and pos == 1:
                    role.setdefault((si, ti), "weights")
                elif name in WEIGHTED_OPS and pos == 2:
                    role.setdefault((si, ti), "biases")
                else:
                    role.setdefault((si, ti), f"other ({name})")
        for idx in list(g.inputs) + list(g.outputs):
            t = g.tensors[idx]
            q = t.quantization
            out["io"].append({"name": _name(t.name), "dtype": TENSOR_TYPES.get(t.type, str(t.type)),
                              "shape": [int(v) for v in t.shape],
                              "scale": [float(v) for v in (q.scale if q is not None and q.scale is not None else [])][:1],
                              "zero_point": [int(v) for v in (q.zeroPoint if q is not None and q.zeroPoint is not None else [])][:1],
                              "kind": "input" if idx in g.inputs else "output"})
    seen_buf = set()
    for si, g in enumerate(m.subgraphs):
        for ti, t in enumerate(g.tensors):
            dtype = TENSOR_TYPES.get(t.type, str(t.type))
            out["tensors"][dtype] += 1
            if t.name:
                out["names"] += 1
                out["names_bytes"] += len(t.name)
            if t.shapeSignature is not None:
                out["shape_signatures"] += 1
            q = t.quantization
            if q is not None:
                for key, attr, size in (("scale", "scale", 4), ("zero_point", "zeroPoint", 8), ("min", "min", 4),
                                        ("max", "max", 4)):
                    v = getattr(q, attr)
                    if v is not None and len(v):
                        out["quant"][f"{key} entries"] += len(v)
                        out["quant"][f"{key} bytes if unshared"] += size * len(v)
            b = m.buffers[t.buffer] if t.buffer < len(m.buffers) else None
            if b is not None and b.data is not None and len(b.data) and t.buffer not in seen_buf:
                seen_buf.add(t.buffer)
                r = role.get((si, ti), "other (unread)")
                out["const"][f"{r}: {dtype}"] += len(b.data)
                out["const_by_dtype"][dtype] += len(b.data)
    for md in m.metadata or []:
        b = m.buffers[md.buffer]
        out["metadata"][_name(md.name)] = 0 if b.data is None else len(b.data)
    out["const_total"] = int(sum(out["const"].values()))
    for k in ("ops", "tensors", "const", "const_by_dtype", "quant"):
        out[k] = dict(sorted(out[k].items()))
    return out


def strip_steps(blob: bytes) -> list[tuple[str, int]]:
    """Bytes removed by dropping, one after the other, what ``Interpreter.invoke`` does not read:
    non-I/O tensor names, non-I/O shape signatures, metadata entries other than
    ``min_runtime_version``, signature defs (used by ``get_signature_runner`` only). Each figure is
    the size difference of two copies serialised by LiteRT's Python packer (measured, alignment
    included); the packer itself is not counted (it writes every quantisation vector again, so a
    file whose vectors were shared grows)."""
    m = _load(blob)
    steps = []
    prev = _size(m)
    io = [set(g.inputs) | set(g.outputs) for g in m.subgraphs]
    for label, attr in (("tensor names (non-I/O)", "name"), ("shape signatures (non-I/O)", "shapeSignature")):
        for g, keep in zip(m.subgraphs, io):
            for i, t in enumerate(g.tensors):
                if i not in keep:
                    setattr(t, attr, None)
        now = _size(m)
        steps.append((label, prev - now))
        prev = now
    keep_md = [md for md in (m.metadata or []) if _name(md.name) == "min_runtime_version"]
    for md in m.metadata or []:
        if md not in keep_md:
            m.buffers[md.buffer].data = None
    m.metadata = keep_md or None
    now = _size(m)
    steps.append(("metadata other than min_runtime_version", prev - now))
    prev = now
    m.signatureDefs = None
    now = _size(m)
    steps.append(("signature defs", prev - now))
    return steps


def layer_rows(blob: bytes) -> list[dict]:
    """Per weighted op in graph order: op, filter shape, filter/bias dtypes and bytes, scales."""
    m = _load(blob)
    ops = _opnames(m)
    rows = []
    for g in m.subgraphs:
        for op in g.operators:
            name = ops[op.opcodeIndex]
            if name not in WEIGHTED_OPS:
                continue
            w = g.tensors[op.inputs[1]]
            b = g.tensors[op.inputs[2]] if len(op.inputs) > 2 and op.inputs[2] >= 0 else None

            def nbytes(t):
                if t is None:
                    return 0
                d = m.buffers[t.buffer].data
                return 0 if d is None else len(d)

            rows.append({"op": name, "shape": [int(v) for v in w.shape],
                         "w_dtype": TENSOR_TYPES.get(w.type), "w_bytes": nbytes(w),
                         "w_scales": 0 if w.quantization is None or w.quantization.scale is None else len(w.quantization.scale),
                         "b_dtype": None if b is None else TENSOR_TYPES.get(b.type), "b_bytes": nbytes(b)})
    return rows


def cut_points(blob: bytes) -> list[tuple[str, int | None]]:
    """Where a ResNet file is cut for sectional timing, in graph order: after every op up to the
    first conv with a k > 1 kernel (the 3×3 stem), after the last ADD (last block), after every op
    of the tail; ``(label, output tensor)``, the last entry ``("full", None)``."""
    m = _load(blob)
    ops, g = _opnames(m), m.subgraphs[0]
    names = [ops[op.opcodeIndex] for op in g.operators]
    stem = next(i for i, op in enumerate(g.operators)
                if names[i] == "CONV_2D" and g.tensors[op.inputs[1]].shape[1] > 1)
    last_add = max(i for i, n in enumerate(names) if n == "ADD")
    idx = list(range(stem + 1)) + [last_add] + list(range(last_add + 1, len(names) - 1))
    cuts = [(f"{names[i]}" + (" (3×3 stem)" if i == stem else " (last block)" if i == last_add else ""),
             int(g.operators[i].outputs[0])) for i in idx]
    return cuts + [(f"{names[-1]} (end)", None)]


def truncate(blob: bytes, tensor: int) -> bytes:
    """A copy of the file that ends at ``tensor``: the ops after its producer are dropped, it is
    the only output, signature defs are dropped (they name the old output). For timing only."""
    m = _load(blob)
    g = m.subgraphs[0]
    k = next(i for i, op in enumerate(g.operators) if tensor in [int(t) for t in op.outputs])
    g.operators = g.operators[:k + 1]
    g.outputs = [tensor]
    m.signatureDefs = None
    return bytes(_fbu().convert_object_to_bytearray(m))


def what_if_stem(blob: bytes) -> bytes | None:
    """WHAT-IF edit (not what the exporter writes): our folded-normalisation stem builds its input
    with CONCATENATION(pixels, c255) then CONCATENATION(y, y) (2 stem copies); here one
    CONCATENATION(pixels, c255, pixels, c255) writes the same tensor (outputs bit-identical, one op
    fewer). None when the file has no such stem (tfmot's, the int8-exact variant's)."""
    m = _load(blob)
    ops, g = _opnames(m), m.subgraphs[0]
    prod = {int(t): i for i, op in enumerate(g.operators) for t in op.outputs}
    for op in g.operators:
        if ops[op.opcodeIndex] != "CONCATENATION" or len(set(int(t) for t in op.inputs)) != 1:
            continue
        j = prod.get(int(op.inputs[0]))
        if j is None or ops[g.operators[j].opcodeIndex] != "CONCATENATION":
            return None
        inner = g.operators[j]
        if (int(inner.builtinOptions.axis) % 4, int(op.builtinOptions.axis) % 4) != (3, 3):
            return None
        op.inputs = np.asarray([int(t) for t in inner.inputs] * len(op.inputs), np.int32)
        g.operators = [o for i, o in enumerate(g.operators) if i != j]
        from rolekd_tf.export.passes import compact_model  # re-share the quantisation vectors, as ours

        return compact_model(bytes(_fbu().convert_object_to_bytearray(m)))[0]
    return None


def with_subsample_pass(blob: bytes) -> bytes | None:
    """An older file (exported before the subsample pass, 2026-12-03) with
    :func:`rolekd_tf.export.passes.subsample.subsample_as_depthwise` applied, then ``compact_model``:
    what today's exporter writes for its stride-2 subsamples. None when the file has no such slice."""
    from rolekd_tf.export.passes import compact_model, subsample_as_depthwise

    out, rec = subsample_as_depthwise(blob)
    return compact_model(out)[0] if rec.channels else None


def what_if_int8_pool(int8_logits_blob: bytes) -> bytes:
    """WHAT-IF (not what the exporter writes by default): int16 logits with the pool left in int8
    — ``rolekd_tf.export.passes.int16_logits(…, exact_pool=False)`` applied to a file exported with
    ``--int8-logits``, then ``compact_model``: MEAN stays int8 (XNNPACK), CAST of 1×C values, 16x8 FC."""
    from rolekd_tf.export.passes import compact_model, int16_logits

    out, rec = int16_logits(int8_logits_blob, exact_pool=False)
    if not rec.get("applied"):
        raise SystemExit(f"error: int16_logits did not apply: {rec.get('why')}")
    return compact_model(out)[0]


# ----------------------------------------------------------------------------- runtime

def interpreter(blob: bytes):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=blob, num_threads=1)
    it.allocate_tensors()
    return it


class Runner:
    """One file's interpreter and its input convention: ``feed(pixels)`` → the input array."""

    def __init__(self, name: str, blob: bytes, *, mean=None, std=None):
        self.name, self.blob = name, blob
        self.it = interpreter(blob)
        self.inp = self.it.get_input_details()[0]
        self.out = self.it.get_output_details()[0]
        self.mean, self.std = mean, std  # set: the file takes normalised images (tfmot); else pixels

    def feed(self, pixels: np.ndarray) -> np.ndarray:
        dtype = self.inp["dtype"]
        if self.mean is None and dtype == np.uint8 and pixels.dtype == np.uint8 and tuple(self.inp["quantization"]) == (1.0, 0):
            return pixels  # our files take the uint8 pixels as they are
        x = np.asarray(pixels, np.float64)
        if self.mean is not None:
            x = (x / 255.0 - self.mean) / self.std
        if dtype == np.float32:
            return x.astype(np.float32)
        s, zp = self.inp["quantization"]
        if self.mean is None and dtype == np.uint8 and (s, zp) == (1.0, 0):
            return np.clip(np.round(x), 0, 255).astype(np.uint8)
        info = np.iinfo(dtype)
        return np.clip(np.round(x / s + zp), info.min, info.max).astype(dtype)

    def predict(self, pixels: np.ndarray, batch: int = 64) -> np.ndarray:
        res = []
        for i in range(0, len(pixels), batch):
            xb = self.feed(pixels[i:i + batch])
            if tuple(self.it.get_input_details()[0]["shape"]) != xb.shape:
                self.it.resize_tensor_input(self.inp["index"], list(xb.shape))
                self.it.allocate_tensors()
            self.it.set_tensor(self.inp["index"], xb)
            self.it.invoke()
            y = self.it.get_tensor(self.out["index"]).astype(np.float32)
            if self.out["dtype"] != np.float32:
                s, zp = self.out["quantization"]
                y = (y - zp) * s
            res.append(y.copy())
        return np.concatenate(res, 0)

    def prepare_single(self, pixel: np.ndarray) -> None:
        x = self.feed(pixel[:1])
        if tuple(self.it.get_input_details()[0]["shape"]) != x.shape:
            self.it.resize_tensor_input(self.inp["index"], list(x.shape))
            self.it.allocate_tensors()
        self.it.set_tensor(self.inp["index"], x)

    def logits_from_pixels(self, pixel: np.ndarray) -> np.ndarray:
        """One uint8 image → float logits, the caller's numpy work included (input preparation,
        and dequantising int8 logits)."""
        self.it.set_tensor(self.inp["index"], self.feed(pixel))
        self.it.invoke()
        y = self.it.get_tensor(self.out["index"])
        if self.out["dtype"] != np.float32:
            s, zp = self.out["quantization"]
            y = (y.astype(np.float32) - zp) * np.float32(s)
        return y

    def time_end_to_end(self, pixel: np.ndarray, repeats: int, warmup: int = 10) -> list[float]:
        for _ in range(warmup):
            self.logits_from_pixels(pixel)
        ts = []
        for _ in range(repeats):
            t = time.perf_counter()
            self.logits_from_pixels(pixel)
            ts.append((time.perf_counter() - t) * 1e3)
        return ts

    def time_invokes(self, repeats: int, warmup: int = 10) -> list[float]:
        for _ in range(warmup):
            self.it.invoke()
        ts = []
        for _ in range(repeats):
            t = time.perf_counter()
            self.it.invoke()
            ts.append((time.perf_counter() - t) * 1e3)
        return ts


def interleaved_latency(runners: list[Runner], pixel: np.ndarray, *, rounds: int, repeats: int,
                        end_to_end: bool = False) -> dict:
    """name → {"all": [ms…], "rounds": [median ms per round]}; the file order rotates every round.
    ``end_to_end``: time uint8 ``pixel`` → float logits with the caller's numpy work
    (:meth:`Runner.logits_from_pixels`), else the invoke alone."""
    for r in runners:
        r.prepare_single(pixel)
    res = {r.name: {"all": [], "rounds": []} for r in runners}
    for k in range(rounds):
        order = runners[k % len(runners):] + runners[:k % len(runners)]
        for r in order:
            ts = r.time_end_to_end(pixel, repeats) if end_to_end else r.time_invokes(repeats)
            res[r.name]["all"].extend(ts)
            res[r.name]["rounds"].append(float(np.median(ts)))
    return res


# ----------------------------------------------------------------------------- data + inputs

def load_run(run_dir: Path):
    from rolekd_tf.training import read_run_config

    return read_run_config(run_dir)


def ensure_ours(run_dir: Path) -> Path:
    f = run_dir / "export" / "model_int8.tflite"
    if not f.is_file():
        from rolekd_tf.export import export_run

        print(f"exporting {run_dir} (int8) …", flush=True)
        export_run(run_dir, formats="int8", eval_size=None, verbose=False)
    return f


def data_sets(cfg) -> list[str]:
    d = cfg.data
    return [f"data.dataset={d.dataset}", f"data.train_size={d.train_size}", f"data.val_size={d.val_size}",
            f"data.holdout_size={d.holdout_size}", f"seed={cfg.seed}"]


def ensure_tfmot(tdir: Path, cfg, a) -> None:
    if (tdir / "model_int8.tflite").is_file() and (tdir / "results.json").is_file():
        return
    if not a.tfmot_python:
        raise SystemExit(f"error: {tdir} has no model_int8.tflite/results.json; pass --tfmot-python to make them")
    cmd = [a.tfmot_python, str(ROOT / "benchmarks" / "tfmot_baseline.py"), "--config", a.tfmot_config,
           *[x for s in data_sets(cfg) for x in ("--set", s)], "--epochs", str(a.tfmot_epochs),
           "--qat-epochs", str(a.tfmot_qat_epochs), "--out", str(tdir), "--results-md", "", "--verbose", "2"]
    print("running: " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=str(ROOT))


def check_same_data(tres: dict, cfg) -> None:
    d = cfg.data
    want = {"train_images": d.train_size, "val_images": d.val_size, "holdout_images": d.holdout_size,
            "seed": cfg.seed}
    got = {k: tres.get(k) for k in want}
    ds = tres.get("dataset", "").replace("${ROLEKD_CIFAR10_TAR}", os.environ.get("ROLEKD_CIFAR10_TAR", "${ROLEKD_CIFAR10_TAR}"))
    if got != want or ds != d.dataset:
        raise SystemExit(f"error: the tfmot run used data {ds!r} {got}, ours {d.dataset!r} {want}; "
                         "re-make the tfmot run on the same data (delete its dir and pass --tfmot-python)")


@dataclass
class Entry:
    """One .tflite file in the comparison. ``kind``: tfmot / ours / option (an export option of the
    same model) / what-if (an edited copy); ``base``: the file an option/what-if derives from."""

    name: str
    blob: bytes
    what: str
    keras_acc: float | None
    kind: str
    base: str | None = None
    normalised: tuple | None = None  # (mean, std): the file takes normalised images (tfmot's contract)


# ----------------------------------------------------------------------------- report

def machine() -> str:
    return "load average (1/5/15 min) %.2f / %.2f / %.2f" % os.getloadavg()


def q(ts, p) -> float:
    return float(np.percentile(np.asarray(ts), p))


def fmt_counter(d: dict) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in d.items()) or "–"


def markdown(res: dict) -> str:
    t = res["tfmot"]["name"]
    L = [f"## ResNet-20 int8 TFLite: ours vs tfmot — {res['date']}", "",
         f"Command: `{res['command']}`  ",
         f"Data: `{res['dataset']}`, {res['images']} holdout images (the same pixels for every file)  ",
         f"Runtime: {res['runtime']}, num_threads=1, {res['rounds']} interleaved rounds × {res['repeats']} "
         f"single-image invokes per file (rotated order)  ",
         f"Machine: {res['machine']}; {res['load_start']} at start, {res['load_end']} at end. The 2 cores were "
         "shared with other jobs: these are not idle timings; compare the ratios, measured interleaved.  ",
         f"tfmot side: {res['tfmot']['how']}  ",
         "Inputs: tfmot's file takes the normalised image quantised to int8 (the caller computes "
         "(pixels/255 − mean)/std and quantises it); ours take uint8 pixels (normalisation inside the file, "
         "so inside its latency), except files exported with `--int8-input normalised`, which take "
         "tfmot's input. End-to-end: one uint8 image → float logits, timed in a second set of "
         "interleaved rounds with the caller's numpy work (tfmot and `--int8-input normalised`: normalise, "
         "quantise (tfmot: also dequantise the int8 logits); ours with pixels: none). Accuracy: the same holdout images for every file; Keras accuracy: "
         "tfmot's QAT Keras model, our model.keras (export report).", "",
         "| file | what | bytes | ×tfmot bytes | latency ms median (IQR) | ×tfmot latency (round ratios min–max) "
         "| end-to-end ms median (IQR) | ×tfmot end-to-end "
         "| int8 acc % | its Keras acc % | Δ points | caller's input preparation µs (numpy, not in the latency) |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    main = [f for f in res["files"] if f["kind"] in ("tfmot", "ours")]
    extra = [f for f in res["files"] if f["kind"] not in ("tfmot", "ours")]
    for f in main:
        lat, own = f["latency"], f["name"] == t
        rr, ka = f.get("round_ratio"), f["keras_accuracy"]
        L.append(f"| {f['name']} | {f['what']} | {f['bytes']:,} | "
                 + ("" if own else f"{f['bytes_ratio']:.3f}") + " | "
                 + f"{lat['median']:.3f} ({lat['p25']:.3f}–{lat['p75']:.3f}) | "
                 + ("" if own else f"{f['latency_ratio']:.3f} ({rr[0]:.3f}–{rr[1]:.3f})") + " | "
                 + _e2e_cells(f, own)
                 + f"{100 * f['accuracy']:.2f} | " + ("" if ka is None else f"{100 * ka:.2f}") + " | "
                 + ("" if ka is None else f"{100 * (f['accuracy'] - ka):+.2f}")
                 + f" | {f['caller_input_prep_us']:.1f} |")
    if extra:
        L += ["", "Export options and WHAT-IF edited copies (measured in the same interleaved rounds; the what-ifs "
              "are NOT what the exporter writes today):", "",
              "| file | what | bytes | ×tfmot bytes | latency ms median (IQR) | ×tfmot latency (round ratios min–max) "
              "| end-to-end ms median (IQR) | ×tfmot end-to-end "
              "| acc % | top-1 agreement with its base file % | max abs Δlogit vs base |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
        for f in extra:
            lat, rr = f["latency"], f["round_ratio"]
            L.append(f"| {f['name']} | {f['what']} | {f['bytes']:,} | {f['bytes_ratio']:.3f} | "
                     f"{lat['median']:.3f} ({lat['p25']:.3f}–{lat['p75']:.3f}) | {f['latency_ratio']:.3f} "
                     f"({rr[0]:.3f}–{rr[1]:.3f}) | " + _e2e_cells(f, False) + f"{100 * f['accuracy']:.2f} | {100 * f['agreement_with_base']:.2f} | "
                     f"{f['max_abs_dlogit_vs_base']:.3g} |")
    L += ["", "Anatomy of each file (read from the flatbuffer):", "",
          "| file | ops | tensors by type | constant bytes by role | quantisation vector entries | names (bytes) "
          "| metadata (bytes) | signature defs | input / output |",
          "|---|---|---|---|---|---|---|---|---|"]
    for f in main:
        a = f["anatomy"]
        io = "; ".join(f"{x['kind']} {x['dtype']}{x['shape']}" + (f" s={x['scale'][0]:.4g} zp={x['zero_point'][0]}"
                                                                   if x["scale"] else "") for x in a["io"])
        L.append(f"| {f['name']} | {sum(a['ops'].values())}: {fmt_counter(a['ops'])} | {fmt_counter(a['tensors'])} | "
                 f"{fmt_counter(a['const'])} | {fmt_counter({k: v for k, v in a['quant'].items() if 'entries' in k})} | "
                 f"{a['names']} ({a['names_bytes']:,}) | {fmt_counter(a['metadata'])} | {a['signature_defs']} | {io} |")
    L += ["", "Bytes each file carries that inference does not read (removed one after the other from a copy, "
          "each re-serialised; measured):", "",
          "| file | " + " | ".join(k for k, _ in main[0]["strip"]) + " | size after these |",
          "|---|" + "---|" * (len(main[0]["strip"]) + 1)]
    for f in main:
        L.append(f"| {f['name']} | " + " | ".join(f"{v:,}" for _, v in f["strip"]) +
                 f" | {f['bytes'] - sum(v for _, v in f['strip']):,} |")
    n = max(len(f["layers"]) for f in main)
    L += ["", "Weighted ops in graph order (filter shape O×H×W×I, number of weight scales, bias dtype and "
          "bytes):", "", "| # | " + " | ".join(f["name"] for f in main) + " |",
          "|---|" + "---|" * len(main)]
    for i in range(n):
        cells = []
        for f in main:
            r = f["layers"][i] if i < len(f["layers"]) else None
            cells.append("" if r is None else f"{'FC' if r['op'] == 'FULLY_CONNECTED' else 'conv'} "
                         f"{'×'.join(map(str, r['shape']))}, s{r['w_scales']}, {r['b_dtype']} {r['b_bytes']}")
        L.append(f"| {i} | " + " | ".join(cells) + " |")
    secs = [f for f in res["files"] if "sections_us" in f]
    if secs:
        L += ["", "Where the time goes (µs): each file also timed as copies cut after every op before the 3×3 stem "
              "conv, after its last block and after every tail op, interleaved with the full files in a second set of "
              "rounds; an op's cost is the difference of consecutive medians (noise: a few µs; negative = noise):", ""]
        for f in secs:
            L.append(f"- {f['name']} (full {f['sections_full_us']:.1f} µs): "
                     + " → ".join(f"{lab} {v:+.1f}" for lab, v in f["sections_us"]))
    if res.get("what_if"):
        L += ["", "What if (edited copies, measured; NOT what either exporter writes):", ""]
        L += [f"- {w}" for w in res["what_if"]]
    if res.get("notes"):
        L += ["", *res["notes"]]
    return "\n".join(L) + "\n"


def _e2e_cells(f: dict, own: bool) -> str:
    e = f["end_to_end"]
    return f"{e['median']:.3f} ({e['p25']:.3f}–{e['p75']:.3f}) | " + ("" if own else f"{f['end_to_end_ratio']:.3f}") + " | "


def update_md(path: Path, key: str, section: str) -> None:
    from benchmarks.sections import replace_section

    replace_section(path, "tfmot-vs-ours", key, section)


# ----------------------------------------------------------------------------- main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ours", action="append", required=True, metavar="NAME=RUN_DIR",
                    help="our run directory (repeatable; the first one fixes the data)")
    ap.add_argument("--what", action="append", default=[], metavar="NAME=TEXT", help="description of a row")
    ap.add_argument("--tfmot-dir", required=True, help="tfmot_baseline.py output dir (model_int8.tflite, results.json)")
    ap.add_argument("--tfmot-python", default=None, help="python of a venv with tfmot + tf_keras (to make --tfmot-dir)")
    ap.add_argument("--tfmot-config", default="configs/quickstart.yaml", help="recipe config for tfmot_baseline.py")
    ap.add_argument("--tfmot-epochs", type=int, default=6)
    ap.add_argument("--tfmot-qat-epochs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--repeats", type=int, default=100)
    ap.add_argument("--int8-logits", action="append", default=[], metavar="NAME=RUN_DIR",
                    help="a copy of --ours NAME's run exported with --int8-logits (adds that file and the "
                         "int8-pool what-if)")
    ap.add_argument("--what-if", action="store_true", help="add the stem-edit what-if of each of our files")
    ap.add_argument("--sections", action="store_true",
                    help="also time copies cut after the stem and after the last block (where the time goes)")
    ap.add_argument("--out", default=None, help="JSON with every figure (default: TFMOT_DIR/vs_ours.json)")
    ap.add_argument("--results-md", default=str(ROOT / "benchmarks" / "results" / "tfmot_vs_ours.md"),
                    help="markdown file whose section for this data setting is updated ('' = none)")
    a = ap.parse_args(argv)

    load_start = machine()
    t0 = time.time()
    ours = []
    for spec in a.ours:
        name, _, rd = spec.partition("=")
        if not rd:
            raise SystemExit(f"error: --ours {spec!r} must be NAME=RUN_DIR")
        ours.append((name, Path(rd)))
    whats = dict(w.partition("=")[::2] for w in a.what)
    cfg = load_run(ours[0][1])
    for name, rd in ours[1:]:
        c = load_run(rd)
        if data_sets(c) != data_sets(cfg):
            raise SystemExit(f"error: --ours {name} was trained on other data ({data_sets(c)}) than {ours[0][0]}")
    tdir = Path(a.tfmot_dir)
    ensure_tfmot(tdir, cfg, a)
    tres = json.loads((tdir / "results.json").read_text())
    check_same_data(tres, cfg)

    from rolekd_tf.data import load_splits

    d = cfg.data
    s = load_splits(d.dataset, train_size=d.train_size, val_size=d.val_size, holdout_size=d.holdout_size,
                    seed=cfg.seed, cache_dir=d.cache_dir)
    x, y = s.x_holdout, s.y_holdout
    mean = np.asarray(tres.get("normalisation", {}).get("mean", s.info.mean), np.float64)
    std = np.asarray(tres.get("normalisation", {}).get("std", s.info.std), np.float64)

    tname = f"tfmot ({tres['fp_epochs']}+{tres['qat_epochs']} ep)"
    files = [Entry(tname, (tdir / "model_int8.tflite").read_bytes(), "tfmot 8-bit QAT, tf_keras ResNet-20, int8 in/out",
                   tres["accuracy"].get("holdout_qat_keras"), "tfmot")]
    for name, rd in ours:
        f = ensure_ours(rd)
        rep = json.loads((rd / "export" / "report.json").read_text())
        keras_acc = rep.get("reference", {}).get("accuracy") if rep.get("reference", {}).get("split") == "holdout" else None
        m = rep.get("model", {})
        inp = rep.get("input", {})
        norm = ((np.asarray(inp["mean"], np.float64), np.asarray(inp["std"], np.float64))
                if inp.get("int8_file_takes") == "normalised" else None)  # export --int8-input normalised
        files.append(Entry(name, f.read_bytes(), whats.get(name, f"rolekd_tf {m.get('name')} w{m.get('w_bits')}a{m.get('a_bits')}"),
                           keras_acc, "ours", normalised=norm))
    if a.what_if:
        for e in [e for e in files if e.kind == "ours"]:
            st = what_if_stem(e.blob)
            if st is not None:
                files.append(Entry(f"{e.name} + stem edit", st, "WHAT-IF: one 4-input CONCATENATION "
                                   "instead of two (see what_if_stem)", e.keras_acc, "what-if", e.name))
            sub = with_subsample_pass(e.blob)
            if sub is not None:
                files.append(Entry(f"{e.name} + subsample pass", sub, "the export's subsample pass applied to "
                                   "this older file (zero_pad STRIDED_SLICE → 1×1/2 DEPTHWISE_CONV_2D)",
                                   e.keras_acc, "what-if", e.name))
    for spec in a.int8_logits:
        name, _, rd = spec.partition("=")
        base = next((e for e in files if e.name == name), None)
        if base is None or not rd:
            raise SystemExit(f"error: --int8-logits {spec!r}: NAME must be one of the --ours names, =RUN_DIR given")
        b8 = (Path(rd) / "export" / "model_int8.tflite").read_bytes()
        files.append(Entry(f"{name} --int8-logits", b8, "export option --int8-logits (same model.keras)",
                           base.keras_acc, "option", name))
        sub8 = with_subsample_pass(b8)
        if sub8 is not None:
            files.append(Entry(f"{name} --int8-logits + subsample pass", sub8, "the --int8-logits file with the "
                               "export's subsample pass applied", base.keras_acc, "what-if", name))
        pool8 = what_if_int8_pool(b8)
        files.append(Entry(f"{name} + int8 pool", pool8, "WHAT-IF: int16 logits, pool left int8 "
                           "(int16_logits(exact_pool=False) on the --int8-logits file)", base.keras_acc, "what-if", name))
        for label, edit in (("stem edit", what_if_stem), ("subsample pass", with_subsample_pass)):
            both = edit(pool8)
            if both is not None:
                files.append(Entry(f"{name} + int8 pool + {label}", both, "WHAT-IF: both edits", base.keras_acc,
                                   "what-if", name))

    def contract(e: Entry):
        """(mean, std) if the file takes normalised images, else (None, None)."""
        if e.kind == "tfmot":
            return mean, std
        src = e if e.base is None else next(b for b in files if b.name == e.base)  # what-ifs keep their source's
        return src.normalised or (None, None)

    runners = [Runner(e.name, e.blob, mean=m, std=sd) for e in files for m, sd in [contract(e)]]
    logits = {r.name: r.predict(x) for r in runners}
    lat = interleaved_latency(runners, x[:1], rounds=a.rounds, repeats=a.repeats)
    e2e = interleaved_latency(runners, np.asarray(x[:1]).astype(np.uint8), rounds=a.rounds, repeats=a.repeats,
                              end_to_end=True)
    prep = {}  # what the caller does before invoke (tfmot: normalise + quantise; ours: uint8 cast)
    for r in runners:
        ts = []
        for _ in range(2000):
            t = time.perf_counter()
            r.feed(x[:1])
            ts.append(time.perf_counter() - t)
        prep[r.name] = float(np.median(ts) * 1e6)

    tblob = files[0].blob
    tmed = float(np.median(lat[tname]["all"]))
    tmed_e2e = float(np.median(e2e[tname]["all"]))
    rows = []
    for e in files:
        L = lat[e.name]
        pred = np.argmax(logits[e.name], -1)
        row = {"name": e.name, "what": e.what, "kind": e.kind, "base": e.base, "bytes": len(e.blob),
               "bytes_ratio": len(e.blob) / len(tblob),
               "latency": {"median": float(np.median(L["all"])), "p25": q(L["all"], 25), "p75": q(L["all"], 75),
                           "rounds": L["rounds"]},
               "latency_ratio": float(np.median(L["all"])) / tmed,
               "accuracy": float(np.mean(pred == y)), "keras_accuracy": e.keras_acc,
               "caller_input_prep_us": prep[e.name],
               "end_to_end": {"median": float(np.median(e2e[e.name]["all"])), "p25": q(e2e[e.name]["all"], 25),
                              "p75": q(e2e[e.name]["all"], 75)},
               "end_to_end_ratio": float(np.median(e2e[e.name]["all"])) / tmed_e2e}
        if e.kind in ("tfmot", "ours"):
            row |= {"anatomy": anatomy(e.blob), "strip": strip_steps(e.blob), "layers": layer_rows(e.blob)}
        if e.base:
            bl = logits[e.base]
            row["agreement_with_base"] = float(np.mean(pred == np.argmax(bl, -1)))
            row["max_abs_dlogit_vs_base"] = float(np.max(np.abs(logits[e.name] - bl)))
        if e.kind != "tfmot":
            rr = np.asarray(L["rounds"]) / np.asarray(lat[tname]["rounds"])
            row["round_ratio"] = [float(rr.min()), float(rr.max())]
            row["round_ratio_median"] = float(np.median(rr))
        rows.append(row)

    what_if = []
    if a.sections:
        # Where the time goes: each main file is also timed cut after every stem op, after its last
        # block and after every tail op (copies ending there), interleaved with the full files; an
        # op's cost is the difference of consecutive cut medians (the body: last block − stem conv).
        cut_runners, plan = [], {}
        for e, r in zip(files, runners):
            if e.kind not in ("tfmot", "ours"):
                continue
            plan[e.name] = cut_points(e.blob)
            for i, (label, ti) in enumerate(plan[e.name]):
                if ti is not None:
                    cut_runners.append(Runner(f"{e.name}|{i}", truncate(e.blob, ti), mean=r.mean, std=r.std))
        main_runners = [r for e, r in zip(files, runners) if e.name in plan]
        clat = interleaved_latency(main_runners + cut_runners, x[:1], rounds=a.rounds, repeats=a.repeats)
        med = {k: float(np.median(v["all"])) * 1e3 for k, v in clat.items()}  # µs
        for row in rows:
            n = row["name"]
            if n not in plan:
                continue
            prev, secs = 0.0, []
            for i, (label, ti) in enumerate(plan[n]):
                t_i = med[n] if ti is None else med[f"{n}|{i}"]
                secs.append([("blocks (stem output → last ADD)" if "(last block)" in label else label),
                             round(t_i - prev, 1)])
                prev = t_i
            row["sections_us"] = secs
            row["sections_full_us"] = round(med[n], 1)

    try:
        from rolekd_tf.export.passes import compact_model

        tc, removed = compact_model(tblob)
        tr = Runner("tfmot compacted", tc, mean=mean, std=std)
        same = bool(np.array_equal(tr.predict(x[:64]), runners[0].predict(x[:64])))
        what_if.append(f"tfmot's file through our `compact_model` (names, shape signatures, conversion metadata, "
                       f"shared quantisation vectors): {len(tc):,} B (removed {fmt_counter(removed.as_dict())}; outputs on 64 "
                       f"images {'bit-identical' if same else 'DIFFERENT'}); ours ÷ that: "
                       + ", ".join(f"{r['name']} {r['bytes'] / len(tc):.3f}" for r in rows[1:]))
    except Exception as e:  # noqa: BLE001 - a what-if; report why it is missing
        what_if.append(f"tfmot's file through our compact_model: failed ({type(e).__name__}: {e})")

    load_end = machine()
    cmd = " ".join(shlex.quote(c) for c in ["python", "benchmarks/tfmot_vs_ours.py",
                                            *(argv if argv is not None else sys.argv[1:])])
    import ai_edge_litert

    res = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="minutes"), "command": cmd,
           "dataset": d.dataset.replace(os.environ.get("ROLEKD_CIFAR10_TAR", "\0"), "${ROLEKD_CIFAR10_TAR}"),
           "images": int(len(x)), "rounds": a.rounds, "repeats": a.repeats,
           "runtime": f"ai_edge_litert {getattr(ai_edge_litert, '__version__', '?')}",
           "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
           "load_start": load_start, "load_end": load_end,
           "tfmot": {"name": tname, "dir": str(tdir),
                     "how": f"`{str(tres.get('command')).replace(str(tdir.resolve()), a.tfmot_dir)}` ({tres.get('date')}; "
                     f"TF {tres['versions']['tensorflow']}, tf_keras {tres['versions']['tf_keras']}, "
                     f"tfmot {tres['versions']['tfmot']})"},
           "files": rows, "what_if": what_if, "seconds": round(time.time() - t0, 1)}
    out = Path(a.out) if a.out else tdir / "vs_ours.json"
    atomic_write_json(out, res)
    md = markdown(res)
    print(md)
    print(f"wrote {out}")
    if a.results_md:
        update_md(Path(a.results_md), f"{s.info.name}-{d.train_size}-{d.holdout_size}-seed{cfg.seed}", md)
        print(f"updated {a.results_md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
