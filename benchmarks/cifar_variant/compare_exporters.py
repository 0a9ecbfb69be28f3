"""Same model, same 1,000 holdout images: int8 file as of 2026-11-25 (no refined grids, int8
logits) vs refined grids vs refined grids + int16 logits (current default).

    python benchmarks/cifar_variant/compare_exporters.py RUN_DIR [RUN_DIR ...]
"""
import sys, numpy as np
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
import rolekd_tf  # noqa
from rolekd_tf.export import graph, passes as P, tflite as T
from rolekd_tf.export.run import evaluation_subset
from rolekd_tf.export.graph import model_normalisation, wrap_with_preprocessing
from rolekd_tf.training import load_run_model
from rolekd_tf.data import load_splits
from rolekd_tf.config import load_config
from pathlib import Path
for rd in map(Path, sys.argv[1:]):
    cfg = load_config(rd / "config.yaml"); model = load_run_model(rd); d = cfg.data
    s = load_splits(d.dataset, train_size=d.train_size, val_size=d.val_size, holdout_size=d.holdout_size, seed=cfg.seed, cache_dir=d.cache_dir)
    sel = evaluation_subset(len(s.x_holdout), 1000, 0)
    x, y = s.x_holdout[sel].astype(np.float32), s.y_holdout[sel]
    mean, std = graph.model_normalisation(model, s.info.mean, s.info.std)
    ref = np.asarray(wrap_with_preprocessing(model, mean, std).predict(x, batch_size=256, verbose=0))
    view, plan = graph.build_export_view(model, mean, std, mode="int8")
    rep = s.x_train[np.random.default_rng(0).permutation(len(s.x_train))[:300]].astype(np.float32)
    raw = P.convert_int8(view, rep)
    old = P.compact_model(P.fix_int8_model(raw, plan, refine_levels=None)[0])[0]
    ref_only = P.fix_int8_model(raw, plan)[0]
    cur = P.compact_model(P.int16_logits(ref_only)[0])[0]
    for name, data in (("2026-11-25 (int8 logits, no refine)", old), ("refined grids, int8 logits", P.compact_model(ref_only)[0]), ("current (refined + int16 logits)", cur)):
        out = T.run(T.interpreter(data), x, batch=100)
        ka, ia = (ref.argmax(1) == y).mean(), (out.argmax(1) == y).mean()
        print(f"{rd.name}: {name}: keras {100*ka:.2f} int8 {100*ia:.2f} delta {100*(ia-ka):+.2f} agree {100*(out.argmax(1)==ref.argmax(1)).mean():.2f} bytes {len(data):,}", flush=True)
