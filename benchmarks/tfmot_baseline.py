"""Baseline: tfmot 8-bit quantisation-aware training → full-int8 TFLite, as one more table row.

Usage::

    python benchmarks/tfmot_baseline.py --config configs/quickstart.yaml [--set k=v …]
        [--epochs E] [--qat-epochs E2] [--qat-lr LR] [--out DIR]
        [--results-md benchmarks/results/tfmot_baseline.md]

What users pick today instead of rolekd-tf: tensorflow-model-optimization (tfmot)'s default 8-bit
QAT. tfmot 0.8 only wraps tf_keras (Keras 2) models and rejects Keras 3 ones, so this script runs in
its own process with ``TF_USE_LEGACY_KERAS=1`` (set below, before TensorFlow is imported) and builds
the same CIFAR ResNet-20 as ``rolekd_tf.models.build_model("resnet20")`` in tf_keras: 3×3 stem 16,
3 stages × 3 post-activation basic blocks (16/32/64, strides 1/2/2), 1×1 projection shortcut + BN
where the shape changes, global average pool, dense logits; He-normal conv init, BN momentum
``model.bn_momentum`` and epsilon 1e-3, no conv biases. Same data (``rolekd_tf.data.load_splits``
with the config's dataset/sizes/seed) and the same recipe: SGD-Nesterov (or Adam, per
``train.optimizer``), step LR (``train.lr_milestones`` × ``train.lr_gamma``), coupled weight decay as
an L2 regulariser ``wd/2·‖W‖²`` on conv/dense kernels (gradient ``wd·W``, as the Distiller adds),
pad-4 + random crop, horizontal flip and Cutout (``augment.cutout``) with tf.image / tf ops.

Steps: FP training for ``--epochs`` (default ``train.epochs``), then
``tfmot.quantization.keras.quantize_model`` and QAT fine-tuning for ``--qat-epochs`` (default
``train.epochs``, i.e. the budget of one teacher + one student run of the pipeline) at a constant
``--qat-lr`` (default: the last LR of the FP schedule), then conversion to a full-integer TFLite
model (int8 weights/activations, int8 input/output, representative data = 256 training images).
Accuracy is measured on the holdout split (val too) for the FP Keras model, the QAT Keras model and
the int8 TFLite model (interpreter). Writes ``DIR/results.json``, ``DIR/model_int8.tflite``, prints
a one-row markdown table and updates this config's section of ``--results-md``.

tfmot and tf_keras are the optional extra ``pip install -e '.[tfmot]'``; rolekd_tf never imports them.
"""
from __future__ import annotations

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # must precede any TensorFlow import: tf.keras = tf_keras
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

# ----------------------------------------------------------------------------- config + data

_SUBPROCESS_LOADER = r"""
import json, sys
import numpy as np
from rolekd_tf.config import load_config
from rolekd_tf.data import load_splits
cfg = load_config(sys.argv[1], json.loads(sys.argv[2]))
d = cfg.data
s = load_splits(d.dataset, train_size=d.train_size, val_size=d.val_size,
                holdout_size=d.holdout_size, seed=cfg.seed, cache_dir=d.cache_dir)
np.savez(sys.argv[3], x_train=s.x_train, y_train=s.y_train, x_val=s.x_val, y_val=s.y_val,
         x_holdout=s.x_holdout, y_holdout=s.y_holdout)
info = dict(name=s.info.name, num_classes=s.info.num_classes, mean=list(s.info.mean),
            std=list(s.info.std), image_shape=list(s.info.image_shape))
open(sys.argv[4], "w").write(json.dumps({"cfg": cfg.to_dict(), "info": info}))
"""


def load_config_and_data(config: str, sets: list[str]):
    """(cfg dict, info dict, arrays dict, how). In-process import of rolekd_tf works under
    TF_USE_LEGACY_KERAS=1 (it imports the standalone ``keras`` 3 package, which coexists with
    tf_keras); if it ever does not, the splits come from a plain-Keras-3 subprocess via .npz."""
    try:
        from rolekd_tf.config import load_config
        from rolekd_tf.data import load_splits

        cfg = load_config(config, sets)
        d = cfg.data
        s = load_splits(d.dataset, train_size=d.train_size, val_size=d.val_size,
                        holdout_size=d.holdout_size, seed=cfg.seed, cache_dir=d.cache_dir)
        arrays = {k: getattr(s, k) for k in ("x_train", "y_train", "x_val", "y_val", "x_holdout", "y_holdout")}
        info = dict(name=s.info.name, num_classes=s.info.num_classes, mean=list(s.info.mean),
                    std=list(s.info.std), image_shape=list(s.info.image_shape))
        return cfg.to_dict(), info, arrays, "in-process"
    except ImportError as e:  # pragma: no cover - fallback path
        print(f"importing rolekd_tf under TF_USE_LEGACY_KERAS=1 failed ({e}); loading data in a subprocess",
              flush=True)
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    with tempfile.TemporaryDirectory() as tmp:
        npz, meta = os.path.join(tmp, "splits.npz"), os.path.join(tmp, "meta.json")
        subprocess.run([sys.executable, "-c", _SUBPROCESS_LOADER, config, json.dumps(sets), npz, meta],
                       check=True, env=env, cwd=str(ROOT))
        m = json.loads(Path(meta).read_text())
        with np.load(npz) as z:
            arrays = {k: z[k] for k in z.files}
    return m["cfg"], m["info"], arrays, "subprocess"


# ----------------------------------------------------------------------------- model (tf_keras)

def build_resnet20_tfkeras(tf_keras, *, num_classes: int, input_shape, bn_momentum: float, weight_decay: float,
                           depth: int = 20):
    """CIFAR ResNet-(6n+2) in tf_keras, layer for layer as rolekd_tf's resnet20 at 32 bits."""
    L = tf_keras.layers
    reg = tf_keras.regularizers.l2(weight_decay / 2.0) if weight_decay else None

    def conv(x, f, k, s, name):
        return L.Conv2D(f, k, strides=s, padding="same", use_bias=False, kernel_initializer="he_normal",
                        kernel_regularizer=reg, name=name)(x)

    def bn(x, name):
        return L.BatchNormalization(momentum=bn_momentum, epsilon=1e-3, name=name)(x)

    n = (depth - 2) // 6
    inputs = L.Input(shape=tuple(input_shape), name="images")
    x = L.ReLU(name="stem_relu")(bn(conv(inputs, 16, 3, 1, "stem_conv"), "stem_bn"))
    for s, (filters, stride) in enumerate(((16, 1), (32, 2), (64, 2)), start=1):
        for b in range(1, n + 1):
            name, st = f"stage{s}_block{b}", (stride if b == 1 else 1)
            y = conv(x, filters, 3, st, f"{name}_conv1")
            y = L.ReLU(name=f"{name}_relu1")(bn(y, f"{name}_bn1"))
            y = bn(conv(y, filters, 3, 1, f"{name}_conv2"), f"{name}_bn2")
            if st != 1 or x.shape[-1] != filters:
                sc = bn(conv(x, filters, 1, st, f"{name}_proj_conv"), f"{name}_proj_bn")
            else:
                sc = x
            x = L.ReLU(name=f"{name}_out")(L.Add(name=f"{name}_add")([y, sc]))
    x = L.GlobalAveragePooling2D(name="gap")(x)
    logits = L.Dense(num_classes, kernel_regularizer=reg, name="logits")(x)
    return tf_keras.Model(inputs, logits, name=f"resnet{depth}_tfkeras")


def step_lr(base_lr: float, epochs: int, milestones, gamma: float):
    """Same formula as rolekd_tf.training.step_lr."""
    bounds = [int(round(m * epochs)) for m in milestones]
    return lambda epoch, *_: float(base_lr * gamma ** sum(epoch >= b for b in bounds))


def make_optimizer(tf_keras, t: dict, lr: float):
    kw = {"global_clipnorm": t["grad_clip_norm"]} if t.get("grad_clip_norm") else {}
    if t["optimizer"] == "sgd":
        return tf_keras.optimizers.SGD(learning_rate=lr, momentum=t["momentum"], nesterov=t["nesterov"], **kw)
    return tf_keras.optimizers.Adam(learning_rate=lr, epsilon=t["adam_epsilon"], **kw)


# ----------------------------------------------------------------------------- data pipeline

def normaliser(tf, info):
    mean = tf.constant(np.asarray(info["mean"], np.float32))
    std = tf.constant(np.asarray(info["std"], np.float32))
    return lambda x: (tf.cast(x, tf.float32) / 255.0 - mean) / std


def train_dataset(tf, x, y, info, *, batch_size: int, seed: int, pad_crop: bool, flip: bool, cutout: int):
    """Normalise, then (on normalised images, so zero = the mean fill of the rolekd_tf pipeline)
    pad 4 + random crop, horizontal flip, Cutout ``cutout`` px square at a uniform centre."""
    norm = normaliser(tf, info)
    h, w = int(x.shape[1]), int(x.shape[2])

    def aug(img, label):
        img = norm(img)
        if pad_crop:
            img = tf.image.pad_to_bounding_box(img, 4, 4, h + 8, w + 8)
            img = tf.image.random_crop(img, [h, w, 3])
        if flip:
            img = tf.image.random_flip_left_right(img)
        if cutout > 0:
            cy = tf.random.uniform([], 0, h, dtype=tf.int32)
            cx = tf.random.uniform([], 0, w, dtype=tf.int32)
            rows, cols = tf.range(h)[:, None], tf.range(w)[None, :]
            half = cutout // 2
            inside = ((rows >= cy - half) & (rows < cy - half + cutout)
                      & (cols >= cx - half) & (cols < cx - half + cutout))
            img = tf.where(inside[:, :, None], tf.zeros_like(img), img)
        return img, label

    ds = tf.data.Dataset.from_tensor_slices((x, y.astype(np.int32)))
    ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(aug, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def eval_dataset(tf, x, y, info, batch_size=256):
    norm = normaliser(tf, info)
    ds = tf.data.Dataset.from_tensor_slices((x, y.astype(np.int32)))
    return ds.batch(batch_size).map(lambda a, b: (norm(a), b)).prefetch(tf.data.AUTOTUNE)


def keras_accuracy(model, tf, x, y, info) -> float | None:
    if len(x) == 0:
        return None
    return float(model.evaluate(eval_dataset(tf, x, y, info), verbose=0, return_dict=True)["accuracy"])


# ----------------------------------------------------------------------------- TFLite

def convert_int8(tf, model, x_rep, info) -> bytes:
    norm = normaliser(tf, info)

    def representative():
        for i in range(len(x_rep)):
            yield [norm(x_rep[i:i + 1])]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()


def tflite_accuracy(tf, blob: bytes, x, y, info, batch: int = 250) -> float | None:
    if len(x) == 0:
        return None
    mean = np.asarray(info["mean"], np.float32)
    std = np.asarray(info["std"], np.float32)
    it = tf.lite.Interpreter(model_content=blob)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    scale, zp = inp["quantization"]
    correct, size = 0, None
    for i in range(0, len(x), batch):
        xb = (x[i:i + batch].astype(np.float32) / 255.0 - mean) / std
        if size != len(xb):
            size = len(xb)
            it.resize_tensor_input(inp["index"], [size, *xb.shape[1:]])
            it.allocate_tensors()
        if inp["dtype"] != np.float32:
            q = np.iinfo(inp["dtype"])
            xb = np.clip(np.round(xb / scale + zp), q.min, q.max).astype(inp["dtype"])
        it.set_tensor(inp["index"], xb)
        it.invoke()
        pred = np.argmax(it.get_tensor(out["index"]), axis=-1)  # argmax is invariant to the affine dequant
        correct += int(np.sum(pred == y[i:i + batch]))
    return correct / len(x)


def tensor_type_counts(tf, blob: bytes) -> dict:
    """Counts of tensor dtypes in the flatbuffer (shows the model is int8 end to end)."""
    it = tf.lite.Interpreter(model_content=blob)
    counts: dict = {}
    for d in it.get_tensor_details():
        name = np.dtype(d["dtype"]).name
        counts[name] = counts.get(name, 0) + 1
    return counts


# ----------------------------------------------------------------------------- reporting

def machine() -> str:
    try:
        load = "%.1f / %.1f / %.1f" % os.getloadavg()
    except OSError:
        load = "n/a"
    return f"{platform.machine()}, {os.cpu_count()} CPU cores, load average (1/5/15 min) {load}"


def pct(v):
    return "–" if v is None else f"{100 * v:.2f}"


def markdown_row(r: dict) -> str:
    head = ("| row | bits (w/a) | seeds | holdout acc. % (int8 TFLite) | holdout acc. % (QAT Keras) | "
            "holdout acc. % (FP Keras) | val acc. % (int8 TFLite) | params | int8 .tflite |\n"
            "|---|---|---|---|---|---|---|---|---|")
    a = r["accuracy"]
    row = (f"| tfmot 8-bit QAT → int8 TFLite ({r['model']}, tf_keras, {r['fp_epochs']}+{r['qat_epochs']} ep) "
           f"| 8/8 | 1 | {pct(a['holdout_tflite_int8'])} | {pct(a['holdout_qat_keras'])} | "
           f"{pct(a['holdout_fp_keras'])} | {pct(a['val_tflite_int8'])} | {r['params']:,} | "
           f"{r['int8_tflite_bytes']:,} B ({r['int8_tflite_bytes'] / 1e6:.2f} MB) |")
    return head + "\n" + row


def update_results_md(path: Path, key: str, section: str) -> None:
    """Replace (or append) this run's section, delimited by HTML comments, in the results file."""
    from benchmarks.sections import replace_section

    replace_section(path, "tfmot-run", key, section)


# ----------------------------------------------------------------------------- main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, help="rolekd_tf YAML (data, model.bn_momentum, train, augment)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--epochs", type=int, default=None, help="FP epochs (default train.epochs)")
    ap.add_argument("--qat-epochs", type=int, default=None, help="QAT epochs (default train.epochs)")
    ap.add_argument("--qat-lr", type=float, default=None, help="QAT LR (default: last LR of the FP schedule)")
    ap.add_argument("--out", default=None, help="output dir (default runs/tfmot-<config name>)")
    ap.add_argument("--results-md", default=str(ROOT / "benchmarks" / "results" / "tfmot_baseline.md"),
                    help="markdown file whose section for this run is updated ('' = none)")
    ap.add_argument("--verbose", type=int, default=2)
    a = ap.parse_args(argv)

    t_start = time.time()
    load_start = machine()
    cfg, info, arr, how = load_config_and_data(a.config, a.set)
    t_data = time.time() - t_start

    import tensorflow as tf
    import tf_keras
    import tensorflow_model_optimization as tfmot

    if tf.keras.Model is not tf_keras.Model:
        raise SystemExit("error: TF_USE_LEGACY_KERAS=1 did not take effect (TensorFlow imported too early?)")
    if cfg["model"]["name"] not in ("resnet20", "resnet32", "resnet56"):
        raise SystemExit(f"error: model.name={cfg['model']['name']!r}; this baseline builds resnet20/32/56 only")
    depth = int(cfg["model"]["name"][len("resnet"):])
    t, aug = cfg["train"], cfg["augment"]
    E = a.epochs if a.epochs is not None else t["epochs"]
    E2 = a.qat_epochs if a.qat_epochs is not None else t["epochs"]
    sched = step_lr(t["lr"], E, t["lr_milestones"], t["lr_gamma"])
    qat_lr = a.qat_lr if a.qat_lr is not None else sched(E - 1)
    out = Path(a.out or ROOT / "runs" / f"tfmot-{cfg['name']}")
    out.mkdir(parents=True, exist_ok=True)

    tf_keras.utils.set_random_seed(cfg["seed"])
    fp = build_resnet20_tfkeras(tf_keras, num_classes=info["num_classes"], input_shape=info["image_shape"],
                                bn_momentum=cfg["model"]["bn_momentum"], weight_decay=t["weight_decay"],
                                depth=depth)
    params_rolekd = None
    try:  # sanity: same parameter count as the rolekd_tf model (Keras 3, same process)
        from rolekd_tf.models import build_model

        params_rolekd = int(build_model(cfg["model"]["name"], num_classes=info["num_classes"],
                                        input_shape=tuple(info["image_shape"])).count_params())
    except Exception as e:  # noqa: BLE001 - informative only
        print(f"(could not build the rolekd_tf model for the parameter check: {e})")
    print(f"tf_keras {cfg['model']['name']}: {fp.count_params():,} params (rolekd_tf: {params_rolekd}); "
          f"data {how}: train {len(arr['x_train'])}, val {len(arr['x_val'])}, holdout {len(arr['x_holdout'])}",
          flush=True)

    loss = tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    ds = train_dataset(tf, arr["x_train"], arr["y_train"], info, batch_size=t["batch_size"], seed=cfg["seed"],
                       pad_crop=aug["pad_crop"], flip=aug["flip"], cutout=aug["cutout"])
    val = eval_dataset(tf, arr["x_val"], arr["y_val"], info) if len(arr["x_val"]) else None

    fp.compile(optimizer=make_optimizer(tf_keras, t, t["lr"]), loss=loss, metrics=["accuracy"])
    t0 = time.time()
    h_fp = fp.fit(ds, epochs=E, validation_data=val, verbose=a.verbose,
                  callbacks=[tf_keras.callbacks.LearningRateScheduler(sched)]) if E > 0 else None
    t_fp = time.time() - t0

    qat = tfmot.quantization.keras.quantize_model(fp)
    qat.compile(optimizer=make_optimizer(tf_keras, t, qat_lr), loss=loss, metrics=["accuracy"])
    t0 = time.time()
    h_qat = qat.fit(ds, epochs=E2, validation_data=val, verbose=a.verbose) if E2 > 0 else None
    t_qat = time.time() - t0

    t0 = time.time()
    rng = np.random.default_rng(cfg["seed"])
    rep = arr["x_train"][rng.choice(len(arr["x_train"]), min(256, len(arr["x_train"])), replace=False)]
    blob = convert_int8(tf, qat, rep, info)
    t_conv = time.time() - t0
    (out / "model_int8.tflite").write_bytes(blob)

    t0 = time.time()
    acc = {
        "holdout_fp_keras": keras_accuracy(fp, tf, arr["x_holdout"], arr["y_holdout"], info),
        "holdout_qat_keras": keras_accuracy(qat, tf, arr["x_holdout"], arr["y_holdout"], info),
        "holdout_tflite_int8": tflite_accuracy(tf, blob, arr["x_holdout"], arr["y_holdout"], info),
        "val_fp_keras": keras_accuracy(fp, tf, arr["x_val"], arr["y_val"], info),
        "val_qat_keras": keras_accuracy(qat, tf, arr["x_val"], arr["y_val"], info),
        "val_tflite_int8": tflite_accuracy(tf, blob, arr["x_val"], arr["y_val"], info),
    }
    t_eval = time.time() - t0
    import tensorflow_model_optimization

    cmd = " ".join(shlex.quote(c) for c in ["<tfmot venv>/bin/python", "benchmarks/tfmot_baseline.py",
                                             *(argv if argv is not None else sys.argv[1:])])
    res = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="minutes"),
        "command": cmd,
        "config": a.config, "sets": a.set, "config_name": cfg["name"], "seed": cfg["seed"],
        "normalisation": {"mean": info["mean"], "std": info["std"], "what": "(pixels/255 − mean)/std, outside the file"},
        "dataset": cfg["data"]["dataset"].replace(os.environ.get("ROLEKD_CIFAR10_TAR", "\0"), "${ROLEKD_CIFAR10_TAR}"),
        "train_images": len(arr["x_train"]), "val_images": len(arr["x_val"]),
        "holdout_images": len(arr["x_holdout"]),
        "model": cfg["model"]["name"], "params": int(fp.count_params()), "params_rolekd_tf": params_rolekd,
        "fp_epochs": E, "qat_epochs": E2, "qat_lr": qat_lr, "batch_size": t["batch_size"],
        "recipe": {k: t[k] for k in ("optimizer", "lr", "momentum", "nesterov", "weight_decay",
                                     "lr_milestones", "lr_gamma", "grad_clip_norm")}
        | {"bn_momentum": cfg["model"]["bn_momentum"], "cutout": aug["cutout"], "pad_crop": aug["pad_crop"],
           "flip": aug["flip"]},
        "accuracy": acc,
        "int8_tflite_bytes": len(blob),
        "int8_tflite_tensor_types": tensor_type_counts(tf, blob),
        "history": {"fp": h_fp.history if h_fp else {}, "qat": h_qat.history if h_qat else {}},
        "seconds": {"data": round(t_data, 1), "fp_train": round(t_fp, 1), "qat_train": round(t_qat, 1),
                    "convert": round(t_conv, 1), "evaluate": round(t_eval, 1),
                    "total": round(time.time() - t_start, 1)},
        "versions": {"tensorflow": tf.__version__, "tf_keras": tf_keras.__version__,
                     "tfmot": tensorflow_model_optimization.__version__, "python": platform.python_version()},
        "machine_at_start": load_start, "machine_at_end": machine(),
        "data_loaded": how,
    }
    res["history"] = {k: {m: [float(v) for v in vs] for m, vs in h.items()} for k, h in res["history"].items()}
    (out / "results.json").write_text(json.dumps(res, indent=2))
    row = markdown_row(res)
    print("\n" + row + "\n")
    print(f"results: {out / 'results.json'}, {out / 'model_int8.tflite'}  (total {res['seconds']['total']:.0f}s)")

    if a.results_md:
        s = res["seconds"]
        section = (
            f"## {cfg['name']} — {E} FP + {E2} QAT epochs — {res['date']}\n\n"
            f"Command: `{cmd}`  \n"
            f"Data: `{res['dataset']}` (train {res['train_images']}, val {res['val_images']}, holdout "
            f"{res['holdout_images']}; accuracies on the holdout unless marked val)  \n"
            f"Recipe: {t['optimizer']} lr {t['lr']} milestones {t['lr_milestones']}×{t['lr_gamma']}, wd "
            f"{t['weight_decay']} (L2 wd/2), batch {t['batch_size']}, BN momentum {cfg['model']['bn_momentum']}, "
            f"pad-crop/flip/cutout {int(aug['pad_crop'])}/{int(aug['flip'])}/{aug['cutout']}; QAT constant lr {qat_lr:g}  \n"
            f"Machine: {res['machine_at_start']} at start; {res['machine_at_end']} at end  \n"
            f"Versions: TF {res['versions']['tensorflow']}, tf_keras {res['versions']['tf_keras']}, "
            f"tfmot {res['versions']['tfmot']}  \n"
            f"Wall time: data {s['data']} s, FP {s['fp_train']} s, QAT {s['qat_train']} s, convert {s['convert']} s, "
            f"evaluate {s['evaluate']} s, total {s['total']} s  \n"
            f"int8 TFLite tensor types: {res['int8_tflite_tensor_types']}; parameters {res['params']:,} "
            f"(rolekd_tf resnet: {params_rolekd if params_rolekd is not None else 'n/a'})\n\n{row}\n"
        )
        update_results_md(Path(a.results_md), f"{cfg['name']}-{E}-{E2}", section)
        print(f"updated {a.results_md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
