"""Every configs/paper/*.yaml validates and dry-runs (builds everything, one training step).

The paper-scale configs (200 epochs, 16-member searches, TFDS CIFAR) are never trained in CI; this
test catches the failures that would otherwise show up hours into a GPU job: unknown keys, bad
values, a model/KD/update/optimizer combination that does not build or does not step, a search
section PBTOracle refuses.

Per file: ``load_config`` on the file as written (plus recipe checks: 200 epochs, 16 members, a
header comment naming the recipe), a PBTOracle from its search section, then a **dry run** with the
data overridden to a tiny ``embedded:digits`` split (``train_size = batch = 8``): ``Task.build()``
(for KD students with a teacher run and ``--init`` from it, as the pipeline does) and one ``fit``
epoch of one step, which must give finite losses.

Sharing (keeps the module < 90 s on 2 cores): the tiny splits and one teacher run per
architecture are built (and loaded back) once per module; the training step runs **eagerly** (tracing the II-KD
step with the released clip rule costs ~45 s per model on this CPU, graph-mode stepping of the
Distiller is covered by tests/distill); and files whose dry run would execute the same code
(same architecture, role, KD loss, update rule and optimizer — once the data is overridden they
differ only in numbers: lr, wd, bit width 2 vs 4, Cutout, dataset name) share one dry run. Each
file is still loaded, validated and turned into its own Task on the tiny data.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from rolekd_tf.config import load_config, save_config

ROOT = Path(__file__).resolve().parents[1]
PAPER = sorted((ROOT / "configs" / "paper").glob("*.yaml"))
BATCH = 8
TINY = [
    "data.dataset=embedded:digits",
    f"data.train_size={BATCH}",
    f"data.val_size={BATCH}",
    "data.holdout_size=0",
    "data.cache_dir=null",
    f"train.batch_size={BATCH}",
]


def _id(p: Path) -> str:
    return p.stem


def test_paper_configs_exist():
    names = {p.stem for p in PAPER}
    for arch in ("resnet18", "alexnet"):
        for ds in ("cifar10", "cifar100"):
            assert f"{arch}_{ds}_teacher" in names
            for b in (2, 4):
                assert f"{arch}_{ds}_w{b}a{b}_iikd" in names, "released-code student recipe"
                assert f"{arch}_{ds}_w{b}a{b}_paper" in names, "paper (Eq. 10) student recipe"


@pytest.mark.parametrize("path", PAPER, ids=_id)
def test_paper_config_validates(path):
    cfg = load_config(path)
    text = path.read_text()
    assert text.startswith("#") and "recipe" in text.splitlines()[0].lower(), \
        f"{path.name}: first line must be a comment naming the recipe"
    assert cfg.name == path.stem
    assert cfg.data.dataset in ("cifar10", "cifar100")
    assert cfg.model.name in ("resnet18", "alexnet")
    assert cfg.train.epochs == 200 and cfg.train.batch_size == 128
    assert (cfg.search.population, cfg.search.epochs, cfg.search.ready_interval) == (16, 200, 3)
    lowbit = cfg.model.w_bits < 32
    assert (cfg.model.w_bits == cfg.model.a_bits) and cfg.model.w_bits in (2, 4, 32)
    if not lowbit:  # teacher recipe (REFERENCE.md §4)
        assert cfg.distill.kd == "none"
        assert (cfg.train.optimizer, cfg.train.lr, cfg.train.weight_decay) == ("sgd", 0.1, 5e-4)
        assert cfg.train.nesterov and cfg.train.lr_milestones == [0.3, 0.6, 0.9]
    elif cfg.distill.update == "clip_to_task_grad":  # released code (KD.md §7)
        assert cfg.distill.kd == "ii"
        assert (cfg.train.optimizer, cfg.train.lr, cfg.train.adam_epsilon) == ("adam", 1e-3, 1e-5)
        assert cfg.train.weight_decay == 1e-5 and cfg.train.lr_milestones == [0.3, 0.6, 0.8]
    else:  # paper, Eq. 10 with KD-SVD's per-variable clipping of the KD gradient (§5.2)
        assert cfg.distill.kd == "ii" and cfg.distill.update == "weighted_clip"
        assert (cfg.train.optimizer, cfg.train.lr, cfg.train.weight_decay) == ("sgd", 1e-3, 1e-5)
        assert (cfg.distill.lambda_init, cfg.distill.lambda_decay) == (0.4, 0.5)
        assert cfg.train.lr_milestones == [0.3, 0.6, 0.9] == cfg.distill.lambda_milestones
    # Cutout as role-kd: 16 on CIFAR-10, 8 on CIFAR-100 (REFERENCE.md §1).
    assert cfg.augment.cutout == (16 if cfg.data.dataset == "cifar10" else 8)
    # The search section builds the PBT oracle (cheap: no model, no data).
    from rolekd_tf.search.oracle import PBTOracle
    from rolekd_tf.search.run import search_seed

    s = cfg.search
    PBTOracle(population=s.population, ready_interval=s.ready_interval, epochs=s.epochs,
              quantile=s.quantile, resample_p=s.resample_p, perturb_max=s.perturb_max,
              seed=search_seed(cfg))


# ------------------------------------------------------------------------------- dry runs

@pytest.fixture(scope="module")
def tiny_splits():
    from rolekd_tf.data import load_splits

    return load_splits("embedded:digits", train_size=BATCH, val_size=BATCH, holdout_size=0, seed=0)


@pytest.fixture(scope="module")
def teacher_runs(tmp_path_factory, tiny_splits):
    """One teacher run directory per architecture (model.keras + config.yaml), built lazily."""
    made: dict[str, Path] = {}

    def get(arch: str) -> Path:
        if arch not in made:
            import keras

            from rolekd_tf.models import build_model

            d = tmp_path_factory.mktemp(f"teacher-{arch}")
            tcfg = load_config(ROOT / "configs" / "paper" / f"{arch}_cifar10_teacher.yaml", TINY)
            keras.utils.set_random_seed(0)
            model = build_model(arch, num_classes=tiny_splits.info.num_classes,
                                input_shape=tuple(tiny_splits.info.image_shape),
                                bn_momentum=tcfg.model.bn_momentum)
            model.save(d / "model.keras")
            save_config(tcfg, d / "config.yaml")
            made[arch] = d
        return made[arch]

    return get


_DRY_RUNS: dict[tuple, dict] = {}
_LOADED: dict[str, object] = {}


@pytest.fixture
def cached_run_models(monkeypatch):
    """``load_run_model`` loads each teacher run once (the real load), then hands out that model
    for ``--teacher`` and ``--init`` (copy_trainable_weights reads frozen models fine)."""
    import rolekd_tf.training as training

    real = training.load_run_model

    def load(run_dir):
        key = str(Path(run_dir).resolve())
        if key not in _LOADED:
            _LOADED[key] = real(run_dir)
        return _LOADED[key]

    monkeypatch.setattr(training, "load_run_model", load)


def _signature(cfg) -> tuple:
    role = "student" if cfg.distill.kd != "none" else "teacher"
    return (cfg.model.name, role, cfg.model.w_bits < 32, cfg.distill.kd, cfg.distill.update,
            cfg.train.optimizer, cfg.distill.mhgd_pretrain_epochs > 0, cfg.distill.adapter)


@pytest.mark.parametrize("path", PAPER, ids=_id)
def test_paper_config_dry_run(path, tiny_splits, teacher_runs, cached_run_models):
    from rolekd_tf.training import Task

    cfg = load_config(path, TINY)
    sig = _signature(cfg)
    role = sig[1]
    teacher = str(teacher_runs(cfg.model.name)) if role == "student" else None
    task = Task(cfg, role=role, teacher_dir=teacher, init_dir=teacher, splits=tiny_splits)
    assert task.steps_per_epoch == 1
    if role == "student":  # λ decays as configured wherever it reaches the gradient
        from rolekd_tf.distill.callbacks import LambdaSchedule

        (ls,) = [c for c in task.callbacks() if isinstance(c, LambdaSchedule)]
        paper = cfg.distill.update in ("weighted_sum", "weighted_clip")
        assert ls.factor == (cfg.distill.lambda_decay if paper else 0.6)
        assert list(ls.fractions) == list(cfg.distill.lambda_milestones)
    if sig in _DRY_RUNS:  # the same code already stepped for an equivalent file
        assert _DRY_RUNS[sig]["finite"], f"{_DRY_RUNS[sig]['file']} (same code path) did not step"
        return
    import keras

    keras.backend.clear_session()
    keras.utils.set_random_seed(cfg.seed)
    model = task.build()
    model.run_eagerly = True
    hist = model.fit(task.train_dataset(), epochs=1, steps_per_epoch=1, verbose=0, shuffle=False,
                     callbacks=task.callbacks())
    logs = {k: float(v[-1]) for k, v in hist.history.items()}
    finite = all(math.isfinite(v) for v in logs.values())
    _DRY_RUNS[sig] = {"file": path.name, "finite": finite}
    assert "loss" in logs and finite, f"{path.name}: non-finite logs after one step: {logs}"
    if role == "student":
        assert {"ce", "kd"} <= set(logs), f"{path.name}: II-KD terms missing from the logs: {logs}"
    # The step changed the student's weights.
    assert model.optimizer.iterations.numpy() == 1
    del model


def test_repro_cifar10_cpu_plan(monkeypatch, tmp_path):
    """The CPU reproduction config validates and plans every row for 2 and 4 bits, 3 seeds."""
    from rolekd_tf.config import ROWS
    from rolekd_tf.pipeline import plan

    monkeypatch.setenv("ROLEKD_CIFAR10_TAR", str(tmp_path / "cifar10.tar.gz"))
    path = ROOT / "configs" / "repro_cifar10_cpu.yaml"
    cfg = load_config(path)
    assert (cfg.data.train_size, cfg.data.holdout_size) == (4000, 10000)
    assert cfg.data.dataset == f"imagefolder:{tmp_path / 'cifar10.tar.gz'}"
    assert list(cfg.pipeline.rows) == list(ROWS) and cfg.pipeline.bits == [2, 4]
    assert cfg.pipeline.seeds == [0, 1, 2] and cfg.search.epochs == cfg.train.epochs
    steps = plan(cfg, str(path), tmp_path / "out", [])
    kinds = [s["kind"] for s in steps]
    assert (kinds.count("train"), kinds.count("search"), kinds.count("export"), kinds.count("baseline")) == (30, 3, 3, 1)
    # Seed-major: seed 0 of every row (and the exports, baseline) before any other seed.
    seeds_in_order = [s["seed"] for s in steps if s["kind"] == "train"]
    assert seeds_in_order == sorted(seeds_in_order)
    assert kinds.index("baseline") < next(i for i, s in enumerate(steps) if s.get("seed") == 1)
