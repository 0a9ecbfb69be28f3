"""CIFAR variant (exact_stem + shared_proj_bn + exact_tail), k-bit: local level moves per quantiser
of the int8 file given its own inputs, on the first 500 of the export's 1,000 holdout images.

    python benchmarks/cifar_variant/level_moves.py RUN_DIR BITS
"""
import sys, numpy as np, tensorflow as tf
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
import rolekd_tf  # noqa
from pathlib import Path
from rolekd_tf.export import graph, passes as P, tflite as T
from rolekd_tf.export.run import evaluation_subset
from rolekd_tf.training import load_run_model
from rolekd_tf.data import load_splits
from rolekd_tf.config import load_config
rd = Path(sys.argv[1]); n = 2 ** int(sys.argv[2]) - 1
cfg = load_config(rd / "config.yaml"); model = load_run_model(rd); d = cfg.data
s = load_splits(d.dataset, train_size=d.train_size, val_size=d.val_size, holdout_size=d.holdout_size, seed=cfg.seed, cache_dir=d.cache_dir)
sel = evaluation_subset(len(s.x_holdout), 1000, 0)
x = s.x_holdout[sel][:500]
mean, std = graph.model_normalisation(model, s.info.mean, s.info.std)
view, plan = graph.build_export_view(model, mean, std, mode="int8")
rep = s.x_train[np.random.default_rng(0).permutation(len(s.x_train))[:300]].astype(np.float32)
data = P.int16_logits(P.fix_int8_model(P.convert_int8(view, rep), plan)[0])[0]
it = T.interpreter(data, experimental_preserve_all_tensors=True)
dd = it.get_input_details()[0]; it.resize_tensor_input(dd["index"], list(x.shape)); it.allocate_tensors()
it.set_tensor(dd["index"], x.astype(dd["dtype"])); it.invoke()
dets = it.get_tensor_details(); L = model.get_layer
def levels(lname):
    shape = tuple(L(lname).output.shape[1:])
    t = [t for t in dets if (f"/{lname}_1/" in t["name"] or f"/{lname}/" in t["name"]) and tuple(t["shape"][1:]) == shape
         and t["dtype"] == np.int8 and abs(t["quantization"][0] * n - 1) < 1e-6][-1]
    return ((it.get_tensor(t["index"]).astype(np.float64) - t["quantization"][1]) / n).astype(np.float32)
margins = {}
def moved(q, pre, lv):
    pre = np.asarray(pre, np.float64)
    m = np.round(np.asarray(L(q)(pre.astype(np.float32))) * n) != np.round(lv * n)
    p = np.clip(pre, 0, 1)[m] * n
    margins[q] = np.abs(p - np.floor(p) - 0.5)
    return int(m.sum())
(mean_op,) = [o for o in it._get_ops_details() if o["op_name"] == "MEAN"]
out_t = [t for t in dets if t["index"] == mean_op["inputs"][0]][0]
last = ((it.get_tensor(out_t["index"]).astype(np.float64) - out_t["quantization"][1]) * out_t["quantization"][0]).astype(np.float32)
stem = L("stem_relu")(L("stem_bn")(L("stem_conv")((x.astype(np.float32) - 128.0) / 64.0), training=False))
bad = {"stage1_block1_in_aq": moved("stage1_block1_in_aq", stem, levels("stage1_block1_in_aq"))}
names = {l.name for l in model.layers}; total = 0
blocks = [f"stage{a}_block{b}" for a in (1, 2, 3) for b in (1, 2, 3)]
for i, bl in enumerate(blocks):
    xin, mid = levels(f"{bl}_in_aq"), levels(f"{bl}_mid_aq"); total += xin.size + mid.size
    bad[f"{bl}_mid_aq"] = moved(f"{bl}_mid_aq", L(f"{bl}_bn1")(L(f"{bl}_conv1")(xin), training=False), mid)
    if f"{bl}_proj_conv" in names:
        y = L(f"{bl}_bn2")(L(f"{bl}_conv2")(mid) + L(f"{bl}_proj_conv")(xin), training=False)
    else:
        y = L(f"{bl}_bn2")(L(f"{bl}_conv2")(mid), training=False) + xin
    if i + 1 == len(blocks):
        bad[f"{bl}_out"] = moved(f"{bl}_out", y, last)
    else:
        nb = blocks[i + 1]; bad[f"{nb}_in_aq"] = moved(f"{nb}_in_aq", tf.nn.relu(y), levels(f"{nb}_in_aq"))
print(rd, "elements", total, "moves", sum(bad.values()))
for k, v in bad.items():
    if v: print(f"  {k}: {v} moves, distance from the threshold {margins[k].min():.2e}..{margins[k].max():.2e} steps")
