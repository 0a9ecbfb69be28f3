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
  input convention: uint8 pixels for ours, normalised + int8-quantised for tfmot's).
* Latency: LiteRT (``ai_edge_litert``) interpreters, ``num_threads=1``, all files loaded in this
  process; ``--rounds`` rounds, each timing ``--repeats`` single-image invokes of every file in a
  rotated order (interleaved, so load changes hit all files alike); median and IQR of all invokes,
  and the per-round ratio ours/tfmot. Load average recorded at start and end.
* Bytes: total, and an anatomy of each flatbuffer (constant data by role, quantisation vectors,
  names, metadata, signatures, ops, tensors), plus "what if" figures: tfmot's file run through our
  ``compact_model`` (what it would weigh stripped like ours). What-ifs are measurements of edited
  copies, never what either exporter writes.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from rolekd_tf.fileio import atomic_write_json, atomic_write_text  # noqa: E402

TENSOR_TYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string", 6: "bool",
                7: "int16", 9: "int8", 10: "float64", 17: "int4"}
ITEMSIZE = {"float32": 4, "float16": 2, "int32": 4, "uint8": 1, "int64": 8, "bool": 1, "int16": 2, "int8": 1,
            "float64": 8}
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
        x = np.asarray(pixels, np.float64)
        if self.mean is not None:
            x = (x / 255.0 - self.mean) / self.std
        dtype = self.inp["dtype"]
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

    def time_invokes(self, repeats: int, warmup: int = 10) -> list[float]:
        for _ in range(warmup):
            self.it.invoke()
        ts = []
        for _ in range(repeats):
            t = time.perf_counter()
            self.it.invoke()
            ts.append((time.perf_counter() - t) * 1e3)
        return ts


def interleaved_latency(runners: list[Runner], pixel: np.ndarray, *, rounds: int, repeats: int) -> dict:
    """name → {"all": [ms…], "rounds": [median ms per round]}; the file order rotates every round."""
    for r in runners:
        r.prepare_single(pixel)
    res = {r.name: {"all": [], "rounds": []} for r in runners}
    for k in range(rounds):
        order = runners[k % len(runners):] + runners[:k % len(runners)]
        for r in order:
            ts = r.time_invokes(repeats)
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
         f"tfmot side: {res['tfmot']['how']}", "",
         "| file | what | bytes | ×tfmot bytes | latency ms median (IQR) | ×tfmot latency (round ratios min–max) "
         "| int8 acc % | its Keras acc % | Δ points |",
         "|---|---|---|---|---|---|---|---|---|"]
    for f in res["files"]:
        lat, own = f["latency"], f["name"] == t
        rr, ka = f.get("round_ratio"), f["keras_accuracy"]
        L.append(f"| {f['name']} | {f['what']} | {f['bytes']:,} | "
                 + ("" if own else f"{f['bytes_ratio']:.3f}") + " | "
                 + f"{lat['median']:.3f} ({lat['p25']:.3f}–{lat['p75']:.3f}) | "
                 + ("" if own else f"{f['latency_ratio']:.3f} ({rr[0]:.3f}–{rr[1]:.3f})") + " | "
                 + f"{100 * f['accuracy']:.2f} | " + ("" if ka is None else f"{100 * ka:.2f}") + " | "
                 + ("" if ka is None else f"{100 * (f['accuracy'] - ka):+.2f}") + " |")
    L += ["", "Anatomy of each file (read from the flatbuffer):", "",
          "| file | ops | tensors by type | constant bytes by role | quantisation vector entries | names (bytes) "
          "| metadata (bytes) | signature defs | input / output |",
          "|---|---|---|---|---|---|---|---|---|"]
    for f in res["files"]:
        a = f["anatomy"]
        io = "; ".join(f"{x['kind']} {x['dtype']}{x['shape']}" + (f" s={x['scale'][0]:.4g} zp={x['zero_point'][0]}"
                                                                   if x["scale"] else "") for x in a["io"])
        L.append(f"| {f['name']} | {sum(a['ops'].values())}: {fmt_counter(a['ops'])} | {fmt_counter(a['tensors'])} | "
                 f"{fmt_counter(a['const'])} | {fmt_counter({k: v for k, v in a['quant'].items() if 'entries' in k})} | "
                 f"{a['names']} ({a['names_bytes']:,}) | {fmt_counter(a['metadata'])} | {a['signature_defs']} | {io} |")
    L += ["", "Bytes each file carries that inference does not read (removed one after the other from a copy, "
          "each re-serialised; measured):", "",
          "| file | " + " | ".join(k for k, _ in res["files"][0]["strip"]) + " | size after these |",
          "|---|" + "---|" * (len(res["files"][0]["strip"]) + 1)]
    for f in res["files"]:
        L.append(f"| {f['name']} | " + " | ".join(f"{v:,}" for _, v in f["strip"]) +
                 f" | {f['bytes'] - sum(v for _, v in f['strip']):,} |")
    n = max(len(f["layers"]) for f in res["files"])
    L += ["", "Weighted ops in graph order (filter shape O×H×W×I, number of weight scales, bias dtype and "
          "bytes):", "", "| # | " + " | ".join(f["name"] for f in res["files"]) + " |",
          "|---|" + "---|" * len(res["files"])]
    for i in range(n):
        cells = []
        for f in res["files"]:
            r = f["layers"][i] if i < len(f["layers"]) else None
            cells.append("" if r is None else f"{'FC' if r['op'] == 'FULLY_CONNECTED' else 'conv'} "
                         f"{'×'.join(map(str, r['shape']))}, s{r['w_scales']}, {r['b_dtype']} {r['b_bytes']}")
        L.append(f"| {i} | " + " | ".join(cells) + " |")
    if res.get("what_if"):
        L += ["", "What if (edited copies, measured; NOT what either exporter writes):", ""]
        L += [f"- {w}" for w in res["what_if"]]
    if res.get("notes"):
        L += ["", *res["notes"]]
    return "\n".join(L) + "\n"


def update_md(path: Path, key: str, section: str) -> None:
    begin, end = f"<!-- tfmot-vs-ours: {key} -->", f"<!-- /tfmot-vs-ours: {key} -->"
    text = path.read_text() if path.exists() else (
        "# Our int8 TFLite vs tfmot's int8 TFLite (same ResNet-20, one process)\n\n"
        "`benchmarks/tfmot_vs_ours.py`: issue 21 target \"our int8 file ≤ 1.0× the latency and ≤ 1.0× "
        "the bytes of tfmot's int8 TFLite of the same architecture, on the same machine in one run\". "
        "The tfmot file comes from `benchmarks/tfmot_baseline.py` (its own section file: "
        "`tfmot_baseline.md`) on the same data. One section per data setting; re-running replaces it.\n")
    block = f"{begin}\n{section.rstrip()}\n{end}"
    pat = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    text = pat.sub(lambda _: block, text) if pat.search(text) else text.rstrip() + "\n\n" + block + "\n"
    atomic_write_text(path, text)


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
    files = [(tname, (tdir / "model_int8.tflite").read_bytes(), "tfmot 8-bit QAT, tf_keras ResNet-20, int8 in/out",
              tres["accuracy"].get("holdout_qat_keras"), True)]
    for name, rd in ours:
        f = ensure_ours(rd)
        rep = json.loads((rd / "export" / "report.json").read_text())
        keras_acc = rep.get("reference", {}).get("accuracy") if rep.get("reference", {}).get("split") == "holdout" else None
        m = rep.get("model", {})
        files.append((name, f.read_bytes(), whats.get(name, f"rolekd_tf {m.get('name')} w{m.get('w_bits')}a{m.get('a_bits')}"),
                      keras_acc, False))

    runners = [Runner(n, b, mean=mean if is_t else None, std=std if is_t else None) for n, b, _, _, is_t in files]
    accs = {r.name: float(np.mean(np.argmax(r.predict(x), -1) == y)) for r in runners}
    lat = interleaved_latency(runners, x[:1], rounds=a.rounds, repeats=a.repeats)

    tblob = files[0][1]
    tmed = float(np.median(lat[tname]["all"]))
    rows = []
    for (n, b, what, kacc, is_t) in files:
        L = lat[n]
        row = {"name": n, "what": what, "bytes": len(b), "bytes_ratio": len(b) / len(tblob),
               "latency": {"median": float(np.median(L["all"])), "p25": q(L["all"], 25), "p75": q(L["all"], 75),
                           "rounds": L["rounds"]},
               "latency_ratio": float(np.median(L["all"])) / tmed,
               "accuracy": accs[n], "keras_accuracy": kacc,
               "anatomy": anatomy(b), "strip": strip_steps(b), "layers": layer_rows(b)}
        if not is_t:
            rr = np.asarray(L["rounds"]) / np.asarray(lat[tname]["rounds"])
            row["round_ratio"] = [float(rr.min()), float(rr.max())]
            row["round_ratio_median"] = float(np.median(rr))
        rows.append(row)

    what_if = []
    try:
        from rolekd_tf.export.tflite import compact_model

        tc, removed = compact_model(tblob)
        tr = Runner("tfmot compacted", tc, mean=mean, std=std)
        same = bool(np.array_equal(tr.predict(x[:64]), runners[0].predict(x[:64])))
        what_if.append(f"tfmot's file through our `compact_model` (names, shape signatures, conversion metadata, "
                       f"shared quantisation vectors): {len(tc):,} B (removed {fmt_counter(removed)}; outputs on 64 "
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
           "tfmot": {"name": tname, "dir": str(tdir), "how": f"`{tres.get('command')}` ({tres.get('date')}; "
                     f"TF {tres['versions']['tensorflow']}, tf_keras {tres['versions']['tf_keras']}, "
                     f"tfmot {tres['versions']['tfmot']})"},
           "files": rows, "what_if": what_if, "seconds": round(time.time() - t0, 1)}
    out = Path(a.out) if a.out else tdir / "vs_ours.json"
    atomic_write_json(out, res)
    md = markdown(res)
    print(md)
    print(f"wrote {out}")
    if a.results_md:
        update_md(Path(a.results_md), f"{d.dataset.split(':')[0]}-{d.train_size}-{d.holdout_size}-seed{cfg.seed}", md)
        print(f"updated {a.results_md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
