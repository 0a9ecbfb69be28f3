"""``export/report.json`` and its printed table: sizes, stored dtypes, accuracy, agreement,
max |logit diff| and single-image latency of every exported file."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def dir_bytes(path) -> int:
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def compare(logits: np.ndarray, ref: np.ndarray, labels: np.ndarray) -> dict:
    return {
        "accuracy": float(np.mean(logits.argmax(1) == labels)),
        "top1_agreement": float(np.mean(logits.argmax(1) == ref.argmax(1))),
        "max_abs_logit_diff": float(np.max(np.abs(logits - ref))) if len(ref) else 0.0,
    }


def layer_table(model_bytes: bytes, plan: dict, ops: list | None = None) -> list[dict]:
    """Per conv/dense layer: the bit width it represents vs the dtype stored in the flatbuffer.
    ``ops``: the records of the grids/bias passes (or of the int4 pass) for this file."""
    from rolekd_tf.export import tflite as T

    interp = T.interpreter(model_bytes)
    fb = T.flatbuffer_tensor_types(model_bytes)
    by_layer = {}
    fixes = ops or []
    by_index = {v["index"]: v for v in fb.values() if v.get("subgraph", 0) == 0}
    for w in T.weight_tensors(interp):
        # match by operator index (stable through compact_model), then by tensor name
        rec = next((f for f in fixes if f.get("op_index") == w["op_index"] and f.get("tensor_index") == w["index"]), None)
        if rec is None:
            rec = next((f for f in fixes if w["name"] and f.get("tensor") == w["name"]), None)
        layer = rec["layer"] if rec else _guess_layer(w["name"], plan)
        info = plan.get(layer, {})
        fbt = by_index.get(w["index"]) or fb.get(w["name"], {})
        stored = fbt.get("type", w["dtype"])
        vals = w["values"]
        row = {
            "layer": layer, "op": w["op"], "op_index": w["op_index"], "w_bits": info.get("w_bits"),
            "stored_dtype": stored, "stored_bytes": fbt.get("buffer_bytes"),
            "shape": w["shape"],
            "exact_dorefa_grid": bool(rec and rec.get("exact_weights")),
        }
        if rec and rec.get("merged"):
            row["merged_layers"] = rec["merged"]
        if rec and rec.get("bias_unfit_channels"):
            row["bias_unfit_channels"] = rec["bias_unfit_channels"]
        if rec and rec.get("scale_adjusted_channels"):
            row["scale_adjusted_channels"] = rec["scale_adjusted_channels"]
            row["max_scale_change"] = rec["max_scale_change"]
        if rec and rec.get("stem_copies"):
            row["stem_copies"] = rec["stem_copies"]
        if vals is not None and vals.dtype.kind in "iu" and vals.size:
            u = np.unique(vals)
            row["distinct_int_values"] = int(len(u))
            if len(u) <= 16:
                row["int_values"] = [int(v) for v in u]
        by_layer[layer or w["name"] or f"op{w['op_index']}"] = row
    return list(by_layer.values())


def _guess_layer(tensor_name: str, plan: dict):
    for name in sorted(plan, key=len, reverse=True):
        if f"/{name}/" in tensor_name or f"/{name}_1/" in tensor_name:
            return name
    return None


def format_table(report: dict) -> str:
    f64 = "float64" in report["reference"]
    rows = [("file", "bytes", "×fp32", "acc %", "Keras acc %", "agree %") + (("agree f64 %",) if f64 else ())
            + ("max abs Δlogit", "latency ms")]
    keras_acc = report["reference"]["accuracy"] * 100
    fp32 = report["files"].get("model_fp32.tflite", {}).get("bytes")
    for name, f in report["files"].items():
        ev = f.get("eval") or {}
        rows.append((
            name, f"{f['bytes']:,}",
            f"{f['bytes'] / fp32:.3f}" if fp32 and name.endswith(".tflite") else "",
            f"{100 * ev['accuracy']:.2f}" if "accuracy" in ev else "",
            f"{keras_acc:.2f}" if ev else "",
            f"{100 * ev['top1_agreement']:.2f}" if "top1_agreement" in ev else "",
            *((f"{100 * f['eval_float64']['top1_agreement']:.2f}" if "eval_float64" in f else "",) if f64 else ()),
            f"{ev['max_abs_logit_diff']:.2e}" if "max_abs_logit_diff" in ev else "",
            f"{f['latency_ms']:.3f}" if f.get("latency_ms") is not None else "",
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    ev = report["reference"]
    part = f" (seeded random subset of {ev['of']})" if ev.get("of", ev["images"]) > ev["images"] else ""
    lines.append(f"evaluated on {ev['images']} {ev['split']} images{part}; latency: median of "
                 f"{report['latency']['repeats']} single-image invokes, num_threads={report['latency']['num_threads']}")
    if f64:
        lines.append(f"agree f64: top-1 agreement with the same network evaluated in float64 (exact-arithmetic "
                     f"reference); Keras float32 itself agrees {100 * ev['float64']['top1_agreement']:.2f} % with it")
    for name, f in report["files"].items():
        if f.get("layers"):
            kinds = {}
            for lay in f["layers"]:
                key = (lay.get("w_bits"), lay.get("stored_dtype"), lay.get("exact_dorefa_grid"))
                kinds[key] = kinds.get(key, 0) + 1
            desc = "; ".join(f"{c}× w_bits={wb} stored {dt}{' (exact DoReFa grid)' if ex else ''}"
                             for (wb, dt, ex), c in sorted(kinds.items(), key=lambda kv: str(kv[0])))
            lines.append(f"{name}: {desc}")
    for name, why in report.get("skipped", {}).items():
        lines.append(f"{name}: skipped — {why}")
    for name, f in report["files"].items():
        ex = f.get("exactness")
        if ex:
            if ex["exact_body"]:
                lines.append(f"{name} exactness: every quantiser, pool and logits accumulator as in Keras; {ex['always']}")
            else:
                parts = "; ".join(f"{p['part']} ({p['why']}" + (f"; exact with {p['fix']})" if p["fix"] else ")")
                                  for p in ex["inexact"])
                lines.append(f"{name} exactness: not exact: {parts}")
    return "\n".join(lines)


def markdown_table(report: dict) -> str:
    """The :func:`format_table` figures as a Markdown table plus notes."""
    t = format_table(report).splitlines()
    rule = t[1]
    cut = next(i for i, line in enumerate(t) if line.startswith("evaluated on"))
    def cells(line):
        return [c.strip() for c in _split_fixed(line, rule)]
    out = ["| " + " | ".join(cells(t[0])) + " |", "|" + "---|" * len(cells(t[0]))]
    out += ["| " + " | ".join(cells(line)) + " |" for line in t[2:cut]]
    out.append("")
    out += [f"- {line}" for line in t[cut:]]
    return "\n".join(out)


def _split_fixed(line: str, rule: str):
    cols, pos = [], 0
    for seg in rule.split("  "):
        cols.append(line[pos:pos + len(seg)])
        pos += len(seg) + 2
    return cols


def env_info() -> dict:
    import platform

    import tensorflow as tf

    return {"tensorflow": tf.__version__, "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "machine": platform.machine()}
