"""``export_run(run_dir, formats)``: every export format of one run directory + ``report.json``."""
from __future__ import annotations

import dataclasses

import datetime as _dt
import os
import time
from pathlib import Path

import numpy as np

from rolekd_tf.errors import CheckpointError, DataError, ExportError, RolekdError
from rolekd_tf.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text, clean_stale_temporaries, save_model_atomic

#: format name → file/folder under RUN_DIR/export/
FORMATS = {
    "keras": "model.keras",
    "saved_model": "saved_model",
    "fp32": "model_fp32.tflite",
    "int8": "model_int8.tflite",
    "w4": "model_w4.tflite",
}
#: ``w4`` (int4 weights of ≤3-bit layers) is added to the defaults when ai-edge-quantizer is
#: installed and the model has such layers; asked for explicitly, its absence is an error.
DEFAULT_FORMATS = ("keras", "saved_model", "fp32", "int8", "w4")


def parse_formats(formats) -> list[str]:
    if formats is None:
        return list(DEFAULT_FORMATS)
    if isinstance(formats, str):
        formats = [f for f in formats.replace(",", " ").split() if f]
    out = []
    for f in formats:
        f = str(f).strip().lower()
        if f == "all":
            out.extend(DEFAULT_FORMATS)
            continue
        if f not in FORMATS:
            raise ExportError(f"export format {f!r} is unknown; allowed: {', '.join(FORMATS)} (or all)")
        out.append(f)
    if not out:
        raise ExportError(f"no export format given; allowed: {', '.join(FORMATS)}")
    return list(dict.fromkeys(out))


def _load(run_dir: Path):
    from rolekd_tf.training import load_run_model, read_run_config

    if not run_dir.is_dir():
        raise ExportError(f"run directory {str(run_dir)!r} does not exist")
    if not (run_dir / "model.keras").is_file():
        raise ExportError(f"run directory {str(run_dir)!r} has no model.keras to export (is the training finished?)")
    try:
        cfg = read_run_config(run_dir)
        model = load_run_model(run_dir)
    except CheckpointError as e:
        raise ExportError(str(e)) from None
    return cfg, model


def _check_data(model, splits, what: str) -> None:
    info = splits.info
    nc = int(model.output_shape[-1])
    shape = tuple(int(d) for d in model.input_shape[1:])
    if nc != info.num_classes:
        raise ExportError(f"{what} {info.name!r} has {info.num_classes} classes but the model predicts {nc}; "
                          "use the dataset the run was trained on")
    if tuple(info.image_shape) != shape:
        raise ExportError(f"{what} {info.name!r} has images of shape {tuple(info.image_shape)} but the model takes {shape}")
    for name in ("x_train", "x_val", "x_holdout", "x_test"):
        x = getattr(splits, name)
        if len(x) and tuple(x.shape[1:]) != shape:
            raise ExportError(f"{what} {info.name!r}: {name} has images of shape {tuple(x.shape[1:])} but the model takes {shape}")


def evaluation_subset(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``size`` of ``n`` evaluation images, drawn at random with ``seed``.

    Our splits are stored class-sorted, so a prefix would evaluate one or two classes only.
    """
    return np.sort(np.random.default_rng([seed, 0xE7A1]).permutation(n)[:size])


def export_run(run_dir, formats=None, *, splits=None, representative_size: int = 300,
               eval_size: int | None = 1000, latency_repeats: int = 100, num_threads: int = 1,
               seed: int = 0, verbose: bool = True, int16_logits: bool = True,
               float64_reference: bool = True, int8_input: str = "pixels", integer_output: bool = False) -> dict:
    """Export ``RUN_DIR/model.keras`` into ``RUN_DIR/export/`` and return the report dict.

    Files: ``model.keras`` (trainable, pixels → logits), ``saved_model/`` (``serving_default``),
    ``model_fp32.tflite``, ``model_int8.tflite`` (uint8 pixels in, float32 logits out, int8 weights
    and activations, DoReFa grids exact), ``labels.txt``, ``report.json``.

    ``splits``: a :class:`rolekd_tf.data.Splits` to use instead of loading the run's dataset
    (representative set = first ``representative_size`` training images of a seeded permutation,
    evaluation = the dataset's own test split if it has one, else the holdout split if any, else
    the validation split, at most ``eval_size`` images drawn at random with ``seed``; report.json's
    ``reference.split`` says which). ``int16_logits``: the int8 file computes its logits layer in 16x8 mode
    (int8 weights, int16 output; :func:`rolekd_tf.export.passes.logits.int16_logits`; where an int8
    pool would round the mean of the exact tail's levels,
    :func:`~rolekd_tf.export.passes.logits.needs_exact_pool`, the pool is an exact sum: int8
    depthwise window sums added up by the logits layer); False keeps int8 logits (accelerators
    that run int8 ops only). Stride-2 subsamples of ``zero_pad`` shortcuts are written as exact 1×1
    depthwise convs (:mod:`rolekd_tf.export.passes.subsample`). ``float64_reference``: also evaluate the same
    network in float64 (:mod:`rolekd_tf.export.reference`) and report each file's agreement with it,
    which separates exporter error from float32 rounding in Keras itself. ``int8_input``: what
    the int8 file takes, ``pixels`` (uint8, normalisation inside the file) or ``normalised``
    (tfmot's contract: int8 on the grid report.json gives, the caller normalises and quantises;
    :data:`rolekd_tf.export.view.INPUTS`). ``integer_output``: the int8 file returns its integer
    logits (int16, int8 with ``int16_logits=False``) with their scale/zero point instead of float32
    (no float op in the file; :mod:`rolekd_tf.export.passes.output`).
    """
    from rolekd_tf.export import graph
    from rolekd_tf.export.view import check_input

    t_start = time.time()
    check_input(int8_input)  # before anything is read or written
    run_dir = Path(run_dir)
    explicit_w4 = formats is not None and "w4" in parse_formats(formats)
    fmts = parse_formats(formats)
    cfg, model = _load(run_dir)
    what = "representative data from"
    if splits is None:
        from rolekd_tf.data import load_splits

        d = cfg.data
        try:
            splits = load_splits(d.dataset, train_size=d.train_size, val_size=d.val_size,
                                 holdout_size=d.holdout_size, seed=cfg.seed, cache_dir=d.cache_dir,
                                 test_split=d.test_split)
        except DataError as e:
            raise ExportError(f"cannot load the run's dataset for calibration/evaluation: {e}") from None
        what = "the run's dataset"
    _check_data(model, splits, what)
    info = splits.info
    mean, std = graph.model_normalisation(model, info.mean, info.std)  # exact_stem: (pixels − 128)/64

    # The run directory is locked while its export is written: train.py (e.g. --overwrite) and a
    # second export wait their turn instead of replacing files under this one.
    from rolekd_tf.rundir import DirLock, _command

    with DirLock(run_dir, "run", _command()):
        return _write_exports(run_dir, fmts, explicit_w4, cfg, model, splits, info, mean, std, t_start,
                              representative_size=representative_size, eval_size=eval_size,
                              latency_repeats=latency_repeats, num_threads=num_threads, seed=seed,
                              verbose=verbose, int16_logits=int16_logits,
                              float64_reference=float64_reference, int8_input=int8_input,
                              integer_output=integer_output)


def _write_exports(run_dir: Path, fmts, explicit_w4, cfg, model, splits, info, mean, std, t_start, *,
                   representative_size, eval_size, latency_repeats, num_threads, seed, verbose,
                   int16_logits, float64_reference, int8_input, integer_output) -> dict:
    """The writing half of :func:`export_run` (``run_dir`` is locked by this process)."""
    from rolekd_tf.export import graph, passes as P, savedmodel, tflite as T
    from rolekd_tf.export import report as R
    from rolekd_tf.export.passes.verify import Evaluation, verify
    from rolekd_tf.export.passes.w4 import convert_w4, w4_layers

    out = run_dir / "export"
    out.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(out)
    rng = np.random.default_rng(seed)
    if len(splits.x_train) == 0:
        raise ExportError(f"dataset {info.name!r} has an empty training split; the int8 calibration needs images")
    rep_idx = rng.permutation(len(splits.x_train))[:representative_size]
    rep = splits.x_train[rep_idx].astype(np.float32)
    if len(splits.x_test):  # the numbers every table reports: the dataset's own test split
        ex, ey, split_name = splits.x_test, splits.y_test, "test"
    elif len(splits.x_holdout):
        ex, ey, split_name = splits.x_holdout, splits.y_holdout, "holdout"
    else:
        ex, ey, split_name = splits.x_val, splits.y_val, "val"
    n_split = len(ex)
    if eval_size is not None and eval_size < len(ex):
        sel = evaluation_subset(len(ex), eval_size, seed)
        ex, ey = ex[sel], ey[sel]
    ex_f = ex.astype(np.float32)

    wrapped = graph.wrap_with_preprocessing(model, mean, std, name=f"{model.name}_pixels")
    ref = np.asarray(wrapped.predict(ex_f, batch_size=256, verbose=0)) if len(ex) else np.zeros((0, info.num_classes))
    ref64 = None
    if float64_reference and len(ex):
        from rolekd_tf.export.reference import float64_logits

        ref64 = float64_logits(model, ex, mean, std)
    report: dict = {
        "run_dir": str(run_dir.resolve()),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": {"name": cfg.model.name, "w_bits": cfg.model.w_bits, "a_bits": cfg.model.a_bits,
                  "params": int(model.count_params())},
        "input": {"layout": "NHWC RGB", "shape": [None, *[int(v) for v in model.input_shape[1:]]],
                  "range": [0, 255], "dtype": {"keras/saved_model/fp32": "float32",
                                               "int8": "uint8" if int8_input == "pixels" else "int8"},
                  "normalisation": ("(x − 128)/64 inside the graph (int8-exact stem variant)" if graph.has_exact_stem(model)
                                    else "(x/255 - mean)/std inside the graph"), "mean": list(mean), "std": list(std),
                  "int8_file_takes": int8_input,
                  **({"int8_file": "the normalised image (x/255 − mean)/std with this mean/std, quantised by the "
                                   "caller with the file's input scale and zero point (files.model_int8.tflite."
                                   "input_quantization); the other files take the pixels"}
                     if int8_input == "normalised" else {})},
        "output": {"name": "logits", "classes": list(info.class_names),
                   "class_order": "index i = line i of labels.txt = DatasetInfo.class_names[i]"
                                  + (" (sorted)" if list(info.class_names) == sorted(info.class_names) else " (NOT sorted)"),
                   **({"int8_file": "integer logits q: real logit = (q − zero_point)·scale, both in "
                                    "files.model_int8.tflite.output; argmax(q) is the class"} if integer_output else {})},
        "dataset": info.name,
        "reference": {"what": "Keras model.keras on the same pixels", "split": split_name,
                      **({"dataset_split": splits.test_split} if split_name == "test" else {}),
                      "images": int(len(ex)), "of": int(n_split),
                      "classes": int(len(np.unique(ey))), **R.compare(ref, ref, ey),
                      **({"float64": {"what": "the same network and weights evaluated in float64",
                                      **R.compare(ref64, ref, ey)}} if ref64 is not None else {})},
        "latency": {"num_threads": num_threads, "repeats": latency_repeats, "unit": "ms",
                    "what": "median wall time of one interpreter invoke on a single image",
                    "runtime": T.runtime_name()},
        "env": R.env_info(),
        "files": {},
    }
    atomic_write_text(out / "labels.txt", "".join(f"{c}\n" for c in info.class_names))

    if "keras" in fmts:
        save_model_atomic(wrapped, out / FORMATS["keras"])
        report["files"]["model.keras"] = {"format": "keras", "bytes": R.dir_bytes(out / "model.keras"),
                                          "note": "trainable: reload with keras.saving.load_model after `import rolekd_tf`"}
    if "saved_model" in fmts:
        savedmodel.export_saved_model(wrapped, out / FORMATS["saved_model"])
        fn = savedmodel.load_serving_fn(out / FORMATS["saved_model"])
        import tensorflow as tf

        sm = np.concatenate([fn(pixels=tf.constant(ex_f[i:i + 256]))["logits"].numpy()
                             for i in range(0, len(ex_f), 256)], 0) if len(ex) else ref
        report["files"]["saved_model"] = {"format": "saved_model", "signature": savedmodel.SIGNATURE,
                                          "bytes": R.dir_bytes(out / "saved_model"), "eval": R.compare(sm, ref, ey)}
    ev = Evaluation(pixels=ex_f, labels=ey, reference=ref, reference64=ref64,
                    timing_pixel=ex_f[:1] if len(ex) else rep[:1], latency_repeats=latency_repeats,
                    num_threads=num_threads)
    fp32_bytes = None
    skipped = {}
    for fmt in ("fp32", "int8", "w4"):
        if fmt not in fmts:
            continue
        takes = int8_input if fmt == "int8" else "pixels"
        norm = takes == "normalised"
        view, plan = graph.build_export_view(model, mean, std, mode="int8" if fmt == "int8" else "float", input=takes)
        extra = {}
        fev = ev
        if norm:  # the caller's work: the file is checked on the normalised images
            fev = dataclasses.replace(ev, pixels=graph.normalise(ev.pixels, mean, std),
                                      timing_pixel=graph.normalise(ev.timing_pixel, mean, std))
        if fmt == "fp32":
            data = fp32_bytes = P.convert_fp32(view)
            ops = None
        elif fmt == "int8":
            last = plan.get(model.layers[-1].name)
            f8 = P.int8_file(view, graph.normalise(rep, mean, std) if norm else rep, plan, int16=int16_logits,
                             logits_bias=None if last is None else last.get("bias"),
                             input_type="int8" if norm else "uint8", integer_logits_output=integer_output)
            data, ops = f8.data, f8.ops
            extra = _int8_entry(model, plan, f8, normalised_input=norm)
        else:
            if not w4_layers(plan) or not _has_quantizer():
                why = ("no layer has 2..3-bit DoReFa weights" if not w4_layers(plan)
                       else "ai-edge-quantizer is not installed (pip install 'rolekd-tf[litert]')")
                if explicit_w4:
                    raise ExportError(f"cannot write the int4-weight variant: {why}")
                skipped["model_w4.tflite"] = why
                continue
            data, ops = convert_w4(fp32_bytes if fp32_bytes is not None else P.convert_fp32(view), plan)
            extra = {"dorefa_layers": len(w4_layers(plan)),
                     "note": ("weight-only: ≤3-bit DoReFa kernels stored as INT4 (exact grid), "
                              "DEQUANTIZE to float32 before each conv; activations/arithmetic float32")}
        path = out / FORMATS[fmt]
        atomic_write_bytes(path, data)
        _, checked = verify(data, fev, plan, ops)
        entry = {"format": f"tflite_{fmt}", **checked.as_dict()}
        if ops is not None:
            entry["exact_dorefa_layers"] = sum(bool(f.exact_weights) for f in ops)
        report["files"][FORMATS[fmt]] = {**entry, **extra}
    if skipped:
        report["skipped"] = skipped
    if "model_fp32.tflite" in report["files"] and "model_int8.tflite" in report["files"]:
        f32, i8 = report["files"]["model_fp32.tflite"], report["files"]["model_int8.tflite"]
        report["ratios"] = {"int8_over_fp32_bytes": i8["bytes"] / f32["bytes"],
                            "int8_over_fp32_latency": i8["latency_ms"] / f32["latency_ms"],
                            "int8_minus_keras_accuracy_points": 100 * (i8["eval"]["accuracy"] - report["reference"]["accuracy"])}
    report["wall_time_s"] = time.time() - t_start
    atomic_write_json(out / "report.json", _jsonable(report))
    if verbose:
        print(R.format_table(report))
        print(f"wrote {out}")
    return report


def _int8_entry(model, plan, f8, *, normalised_input: bool = False) -> dict:
    """The int8 file's report fields beyond :class:`~rolekd_tf.export.passes.verify.VerifyRecord`."""
    from rolekd_tf.export import graph

    logits = f8.logits
    entry = {"dorefa_layers": sum(1 for v in plan.values() if v.get("scale") is not None),
             "compacted_bytes": f8.compacted.as_dict(), "stem": _stem_entry(plan, normalised_input),
             "exactness": graph.int8_exactness(model, plan, f8.ops, exact_pool=logits.exact_pool is not None,
                                               normalised_input=normalised_input),
             "logits": logits.as_dict(),
             "refined_quantiser_inputs": sum(1 for f in f8.ops if f.input_multiple),
             "output": (f8.output.as_dict() if f8.output is not None
                        else {"dtype": "float32", "note": "the logits, dequantised inside the file"})}
    if f8.subsample.channels:
        entry["subsample"] = {"strided_slices_as_depthwise": len(f8.subsample.channels),
                              "channels": f8.subsample.channels, "added_bytes": f8.subsample.added_bytes}
    if logits.applied:
        entry["exactness"]["always"] = (
            f"the logits are rounded once to int16 (step {logits.step:.3g}; int8 logits would have "
            f"step {logits.int8_step:.3g}): only top-2 gaps below that step can flip")
    merged = [v for v in plan.values() if v.kind == "merged_conv"]
    if merged:
        entry["merged_projections"] = [[v.main, v.proj] for v in merged]
    tail = {k: v for k, v in plan.items() if v.kind in ("grid_mean", "exact_dense")}
    if tail:  # exact_tail variant: pool scale 1/(n·H·W) (exact if n·H·W ≤ 255), int8-grid logits
        xp = logits.exact_pool  # the int8 MEAN replaced by int8 window sums the logits FC adds up
        entry["exact_tail"] = {k: (({"pool_scale": xp.scale, "exact": True, "window": xp.window,
                                     "positions": xp.positions} if xp is not None
                                    else {"pool_scale": v.scale_out, "exact": v.exact})
                                   if v.kind == "grid_mean" else {"int8_grid_kernel": True}) for k, v in tail.items()}
    return entry


def _stem_entry(plan, normalised_input: bool = False) -> dict:
    for k, v in plan.items():
        if v.kind == "stem":
            return {"layer": k, "copies": v.copies, "normalisation": "folded into the first conv"}
        if v.kind == "exact_stem":
            return {"layer": k, "normalisation": "(x − 128)/64: pixels − 128 (int8, zero point 0) into the exact int8 first conv"
                    + (", computed by the caller (int8 input scale 1/64)" if normalised_input else "")}
    if normalised_input:
        return {"normalisation": "by the caller: the file takes the normalised image on its int8 input grid"}
    return {"normalisation": "in-graph MUL/ADD before the first conv"}


def _has_quantizer() -> bool:
    try:
        import ai_edge_quantizer  # noqa: F401
    except ImportError:
        return False
    return True


def _jsonable(o):
    from rolekd_tf.export.records import Record

    if isinstance(o, Record):
        return o.as_dict()
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    return o
