"""What each planned pipeline step reads and costs: the text of ``pipeline --dry-run``.

Loads no data and trains nothing: split sizes come from the sizes in the config and, for the
datasets whose size is public, :data:`KNOWN_DATASETS` (the data loaders stay the truth at run time;
an image folder's size is only known once it is read, so its unsized splits print as "rest").
Estimates come from :mod:`rolekd_tf.cost`, which builds each network once to count its FLOPs.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass

from rolekd_tf.cost import REF_MODEL, REF_TRAIN_IMAGES_PER_S, Work, gpu_hours
from rolekd_tf.paper_results import dataset_key


@dataclass(frozen=True)
class DatasetSize:
    train: int  #: images in the dataset's training split
    test: int  #: images in its own test split (0: none)
    num_classes: int
    image_shape: tuple = (32, 32, 3)


#: Public split sizes (TFDS cifar10 / cifar100; the embedded digits have no test split).
KNOWN_DATASETS = {
    "cifar10": DatasetSize(50_000, 10_000, 10),
    "cifar100": DatasetSize(50_000, 10_000, 100),
    "embedded": DatasetSize(1_797, 0, 10),
}


@dataclass(frozen=True)
class Scale:
    """Split sizes one step reads (None: "the rest" of an image folder of unknown size)."""

    train: int | None
    val: int | None
    holdout: int
    test: int | None  #: the dataset's test split (None: unknown), never read by searches
    source: str  #: which config keys set train/val


def _known(dataset: str) -> DatasetSize | None:
    return KNOWN_DATASETS.get(dataset_key(dataset))


def _sizes(total: int | None, train, val, holdout: int) -> tuple[int | None, int | None]:
    """train/val sizes by the rules of :func:`rolekd_tf.data.splits.split_indices`."""
    from rolekd_tf.data.splits import resolve_sizes

    if total is None:
        return train, val
    return resolve_sizes(total, train, val, holdout)


def step_scale(cfg, step: dict) -> Scale:
    """The split sizes ``step`` reads (``cfg``: the step's own config)."""
    known = _known(cfg.data.dataset)
    total = known.train if known else None
    d, s = cfg.data, cfg.search
    # search.train_size/val_size: h3's SearchConfig fields (getattr: configs built without them)
    s_train, s_val = getattr(s, "train_size", None), getattr(s, "val_size", None)
    if step["scale"] == "search" and (s_train is not None or s_val is not None):
        train, val = s_train, s_val
        source = "search.train_size/val_size"
    else:
        train, val = d.train_size, d.val_size
        source = "data.train_size/val_size" + ("; search.train_size/val_size not set" if step["scale"] == "search" else "")
    train, val = _sizes(total, train, val, d.holdout_size)
    test = None
    if step["scale"] == "full":
        test = known.test if known else None
    return Scale(train, val, d.holdout_size if step["scale"] == "full" else 0, test, source)


def _hours(h: float) -> str:
    return f"{h:.2f} GPU-h" if h >= 0.1 else f"{60 * h:.2f} GPU-min"


def _n(v) -> str:
    return "rest" if v is None else f"{v:,}"


def describe_data(cfg, step: dict) -> str:
    """One line: dataset, the split sizes this step reads and which keys set them."""
    sc = step_scale(cfg, step)
    if step["scale"] == "search":
        return (f"{cfg.data.dataset} search split: train {_n(sc.train)} / val {_n(sc.val)} "
                f"({sc.source}); no test images")
    test = ("test split: none" if sc.test == 0 else
            f"test split {_n(sc.test)}" if sc.test is not None else "test split: the dataset's own, if any")
    return (f"{cfg.data.dataset} full data: train {_n(sc.train)} / val {_n(sc.val)} / holdout "
            f"{sc.holdout:,} ({sc.source}); {test}")


def step_work(cfg, step: dict, teacher_model: str | None) -> Work | None:
    """The :class:`~rolekd_tf.cost.Work` of a search/train/baseline step; None when a split size
    is unknown (an image folder without explicit sizes) or the step trains nothing (export)."""
    if step["kind"] not in ("search", "train", "baseline"):
        return None
    sc = step_scale(cfg, step)
    if sc.train is None or sc.val is None:
        return None
    kd = step.get("kd", "none")
    teacher = teacher_model if step.get("teacher") is not None and kd != "none" else None
    if step["kind"] == "search":
        s = cfg.search
        evals = s.population * (s.epochs // s.ready_interval)
        return Work(step["model"], sc.train, s.epochs, evals * sc.val, networks=s.population,
                    teacher=teacher, kd=kd, update=cfg.distill.update)
    epochs = cfg.train.epochs * (2 if step["kind"] == "baseline" else 1)  # tfmot: E FP + E QAT
    evals = epochs * sc.val + sc.holdout + (sc.test or 0)
    return Work(step["model"], sc.train, epochs, evals, teacher=teacher, kd=kd, update=cfg.distill.update)


def step_config(cfg, step: dict):
    """``cfg`` with the step's own overrides applied (epochs, bits, recipe, KD loss …)."""
    from rolekd_tf.config import apply_overrides, config_from_dict

    return config_from_dict(apply_overrides(cfg.to_dict(), list(step.get("sets", []))))


def describe(cfg, steps: list[dict]) -> tuple[str, float | None]:
    """The dry-run text and the total GPU-hours (None when some step cannot be estimated)."""
    info = _known(cfg.data.dataset)
    nc, shape = (info.num_classes, info.image_shape) if info else (10, (32, 32, 3))
    lines = [f"plan: {len(steps)} steps; GPU-hours = (train images × epochs × u_train + evaluated "
             f"images × u_eval) / {REF_TRAIN_IMAGES_PER_S:,.0f} img/s / 3600 — u from the networks' "
             f"FLOPs relative to {REF_MODEL}; {REF_TRAIN_IMAGES_PER_S:,.0f} img/s = assumed {REF_MODEL} "
             "training throughput on one V100, FP32 (rolekd_tf/cost.py, docs/PROTOCOL.md)"
             + ("" if info else f"; FLOPs counted at {nc} classes, {shape[0]}×{shape[1]} images")]
    total: float | None = 0.0
    for i, st in enumerate(steps, 1):
        head = f"[{i}] {st['kind']}"
        if st.get("row"):
            b = st.get("bits")
            head += f" · row {st['row']} · " + ("FP32" if b == 32 else f"w{b}a{b}")
        if st.get("seed") is not None and st["kind"] != "search":
            head += f" · seed {st['seed']}"
        lines += ["", head, "  $ " + " ".join(shlex.quote(str(c)) for c in st["cmd"])]
        if st["kind"] == "export":
            lines.append(f"  reads {st['dir']}/model.keras; estimate: ~0 GPU-h (conversion on the CPU)")
            continue
        scfg = step_config(cfg, st)
        lines.append("  data: " + describe_data(scfg, st))
        reads = [f"{k} {st[k]}" for k in ("teacher", "init", "schedule") if st.get(k) is not None]
        if reads:
            lines.append("  reads: " + "; ".join(reads))
        work = step_work(scfg, st, cfg.model.name)
        if work is None:
            lines.append("  estimate: unknown (give data.train_size/val_size for an image folder)")
            total = None
            continue
        h = gpu_hours(work, nc, shape)
        what = (f"{work.networks} × " if work.networks > 1 else "") + \
               f"{work.train_images:,} images × {work.epochs} epochs of {work.model}"
        if work.teacher:
            what += f" + {work.teacher} teacher forward ({work.kd}, {work.update})"
        lines.append(f"  estimate: {_hours(h)} ({what}; {work.eval_images:,} images evaluated)")
        if total is not None:
            total += h
    lines += ["", "total: " + ("unknown" if total is None else _hours(total))
              + " (lower bound: see rolekd_tf/cost.py for what is not modelled)"]
    return "\n".join(lines), total
