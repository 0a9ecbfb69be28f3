"""Run configuration: plain dataclasses, loaded from YAML, validated at load.

A config file is a YAML mapping with the sections below; every key is optional (defaults are
the paper's teacher recipe on CIFAR-10). ``--set section.key=value`` overrides a value (the value
is parsed as YAML, so ``--set train.lr_milestones=[0.5,0.75]`` works). Unknown keys are errors
with a did-you-mean suggestion.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from rolekd_tf.errors import ConfigError

ALLOWED_BITS = tuple(range(1, 9)) + (32,)
KD_CHOICES = ("none", "ii", "soft", "rkd", "mhgd", "svd", "dml")
UPDATE_CHOICES = ("clip_to_task_grad", "weighted_sum")
OPTIMIZERS = ("sgd", "adam")
SHORTCUTS = ("projection", "zero_pad")  #: model.shortcut (rolekd_tf.models.resnet.SHORTCUTS)
INT8_STEPS = range(1, 43)  #: model.exact_stem_step (rolekd_tf.quant.dorefa.INT8_STEPS)


@dataclass
class DataConfig:
    #: ``embedded:digits`` | a TFDS name (``cifar10``) | ``imagefolder:PATH`` (folder or .tar.gz).
    #: ``${ENV}`` references are expanded, so paths can come from the environment.
    dataset: str = "embedded:digits"
    train_size: int | None = None  #: images in the (reduced) training split; None = the rest
    val_size: int | None = None  #: images in the validation split (search objective, val metrics)
    holdout_size: int = 0  #: images held back for final evaluation only (fixed, seed-independent)
    cache_dir: str | None = None  #: where archives are extracted / decoded arrays cached


@dataclass
class ModelConfig:
    name: str = "resnet20"
    w_bits: int = 32
    a_bits: int = 32
    #: BatchNormalization momentum: 0.99 as in role-kd; short CPU runs (a few hundred steps) need
    #: ~0.9 or the inference-mode statistics lag far behind the weights.
    bn_momentum: float = 0.99
    #: int8-exact variant (post-activation ResNets): the first conv's kernel is fake-quantised on a
    #: per-channel int8 grid and the model takes ``(pixels − 128)/64`` (no per-channel mean/std), so
    #: the int8 TFLite reproduces it exactly (README, "Export"). Teacher and student must agree.
    exact_stem: bool = False
    #: the exact stem's integer weights are multiples of this (its kernel is trained on the
    #: integers −⌊127/step⌋…⌊127/step⌋ per channel, stored ×step): step ≥ 2 leaves the stem's
    #: integer bias room to keep every threshold of a ≥ 3-bit quantiser (1 = the full int8 grid)
    exact_stem_step: int = 1
    #: int8-exact variant: projection blocks compute ``BN(conv2(mid) + proj(x))`` (one BN after the
    #: add), so the int8 export merges both convs into one exact accumulator.
    shared_proj_bn: bool = False
    #: where a ResNet block changes shape: ``projection`` (1×1 conv + BN, option B) or
    #: ``zero_pad`` (subsampled, channel-zero-padded quantised input, He et al.'s option A: no
    #: weights, and the int8 export's residual add is exact)
    shortcut: str = "projection"
    #: int8-exact tail: the last block's output is the a_bits quantiser (not an FP ReLU) and the
    #: ``logits`` kernel is fake-quantised on a per-channel int8 grid, so the int8 export's last
    #: add, global average pool and logits accumulator are exact
    exact_tail: bool = False


@dataclass
class TrainConfig:
    epochs: int = 200
    batch_size: int = 128
    optimizer: str = "sgd"  #: sgd (Nesterov momentum) | adam
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    adam_epsilon: float = 1e-5
    weight_decay: float = 5e-4  #: coupled L2 on conv/dense kernels only
    lr_milestones: list[float] = field(default_factory=lambda: [0.3, 0.6, 0.9])  #: fractions of epochs
    lr_gamma: float = 0.1
    grad_clip_norm: float | None = None  #: global-norm clipping (PBA's child model: 5)
    jit_compile: Any = "auto"  #: auto | true | false — auto = off on CPU (measured slower), on with a GPU
    checkpoint_every: int = 1  #: epochs between resumable checkpoints
    #: tf.config.experimental.enable_op_determinism(): bitwise-reproducible runs (slower kernels)
    deterministic: bool = False
    #: devices to train on with tf.distribute.MirroredStrategy, e.g. ["/gpu:0", "/gpu:1"];
    #: None = all visible GPUs when there are two or more, else one device (rolekd_tf.distribute)
    devices: list[str] | None = None


@dataclass
class AugmentConfig:
    schedule: str | None = None  #: schedule file (our JSON, PBA text, Ray-Tune log); None = baseline only
    schedule_epochs: int | None = None  #: epoch count of a PBA/Ray-Tune log's search (needed to parse it)
    stretch: bool = True  #: stretch a shorter schedule by an integer multiple; never silently reused
    pad_crop: bool = True
    flip: bool = True
    cutout: int = 16  #: side of the baseline Cutout square in px; 0 disables


@dataclass
class DistillConfig:
    kd: str = "none"  #: none | ii | soft | rkd | mhgd | svd | dml
    update: str = "clip_to_task_grad"  #: clip_to_task_grad (released code) | weighted_sum (paper Eq. 10)
    lambda_init: float = 0.4
    lambda_decay: float = 0.5
    lambda_milestones: list[float] = field(default_factory=lambda: [0.3, 0.6, 0.9])
    clip_e0: float = 0.0  #: τ_w = ‖∇CE‖·sigmoid(epoch − e0)
    temperature: float = 3.0
    soft_alpha: float = 0.3
    mhgd_heads: int = 4
    mhgd_pretrain_epochs: int = 0  #: 0 = released code (random frozen heads), 40 = original MHGD
    adapter: bool = False  #: 1×1 adapters on student taps when channel counts differ


@dataclass
class SearchConfig:
    population: int = 16
    ready_interval: int = 3
    epochs: int = 200
    quantile: float = 0.25
    resample_p: float = 0.2
    perturb_max: int = 3
    seed: int | None = None  #: PBT decisions (exploit/explore); None = the top-level seed


ROWS = ("vanilla_fp", "stage_alpha", "vanilla_lowbit", "only_iikd", "stage_beta", "student_at")


@dataclass
class PipelineConfig:
    """What ``python -m rolekd_tf.pipeline`` runs (the paper's Table 2/3 rows)."""

    bits: list = field(default_factory=lambda: [2])  #: student bit widths (w = a)
    seeds: list = field(default_factory=lambda: [0])  #: seeds of the final trainings
    rows: list = field(default_factory=lambda: list(ROWS))
    #: overrides (``section.key=value``) that turn the teacher recipe into the student recipe
    student_set: list = field(default_factory=lambda: [
        "train.optimizer=adam", "train.lr=0.001", "train.weight_decay=1e-5",
        "train.lr_milestones=[0.3,0.6,0.8]"])
    export: bool = True
    #: add the tfmot 8-bit QAT baseline row (benchmarks/tfmot_baseline.py in its own process with
    #: TF_USE_LEGACY_KERAS=1; needs the optional extra ``pip install -e '.[tfmot]'``)
    tfmot: bool = False


@dataclass
class Config:
    name: str = "run"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


_SECTIONS = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "augment": AugmentConfig,
    "distill": DistillConfig,
    "search": SearchConfig,
    "pipeline": PipelineConfig,
}


def _suggest(key: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{hint}; allowed: {', '.join(allowed)}"


def _coerce(where: str, value: Any, default: Any, annotation: str) -> Any:
    """Check ``value`` against the field's declared type (bool/int/float/str/list/None)."""
    ann = annotation.replace(" ", "")
    optional = "None" in ann
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where} must not be empty")
    if ann.startswith("bool"):
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}={value!r} must be true or false")
    if ann.startswith("int"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}={value!r} must be an integer")
        return value
    if ann.startswith("float"):
        if isinstance(value, str):
            # YAML 1.1 reads "1e-5" (no dot) as a string; accept any float literal.
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}={value!r} must be a number")
        return float(value)
    if ann.startswith("str"):
        if not isinstance(value, str):
            raise ConfigError(f"{where}={value!r} must be a string")
        return value
    if ann.startswith("list[str]"):
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}={value!r} must be a list of strings")
        return [str(v) for v in value]
    if ann.startswith("list[float]"):
        if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
        ):
            raise ConfigError(f"{where}={value!r} must be a list of numbers")
        return [float(v) for v in value]
    return value


def _build_section(name: str, cls, raw: Any):
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config section {name!r} must be a mapping, got {type(raw).__name__}")
    allowed = [f.name for f in fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        if key not in allowed:
            raise ConfigError(f"unknown config key '{name}.{key}'{_suggest(str(key), allowed)}")
        f = next(f for f in fields(cls) if f.name == key)
        kwargs[key] = _coerce(f"{name}.{key}", value, f.default, str(f.type))
    return cls(**kwargs)


def _check_choice(where: str, value: str, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{where}={value!r} is not allowed{_suggest(str(value), list(choices))}")


def validate(cfg: Config) -> Config:
    """Check value ranges; raise ConfigError naming the first bad value."""
    for what in ("w_bits", "a_bits"):
        bits = getattr(cfg.model, what)
        if bits not in ALLOWED_BITS:
            raise ConfigError(f"model.{what}={bits} is out of range; allowed: 1..8 or 32")
    if not 0 <= cfg.model.bn_momentum < 1:
        raise ConfigError(f"model.bn_momentum={cfg.model.bn_momentum} must be in [0, 1)")
    _check_choice("model.shortcut", cfg.model.shortcut, SHORTCUTS)
    step = cfg.model.exact_stem_step
    if step not in INT8_STEPS:
        raise ConfigError(f"model.exact_stem_step={step!r} is out of range; allowed: an integer in 1..42")
    if step != 1 and not cfg.model.exact_stem:
        raise ConfigError(f"model.exact_stem_step={step} needs model.exact_stem=true")
    if cfg.model.shared_proj_bn and cfg.model.shortcut != "projection":
        raise ConfigError(f"model.shared_proj_bn=true needs model.shortcut=projection (got {cfg.model.shortcut!r})")
    t = cfg.train
    if t.epochs < 1:
        raise ConfigError(f"train.epochs={t.epochs} must be >= 1")
    if t.batch_size < 2:
        raise ConfigError(f"train.batch_size={t.batch_size} must be >= 2 (KD losses need pairs)")
    if t.lr <= 0:
        raise ConfigError(f"train.lr={t.lr} must be > 0")
    if t.weight_decay < 0:
        raise ConfigError(f"train.weight_decay={t.weight_decay} must be >= 0")
    _check_choice("train.optimizer", t.optimizer, OPTIMIZERS)
    for m in t.lr_milestones:
        if not 0 < m < 1:
            raise ConfigError(f"train.lr_milestones contains {m}; each must be a fraction in (0, 1)")
    if t.jit_compile not in ("auto", True, False):
        raise ConfigError(f"train.jit_compile={t.jit_compile!r}; allowed: auto, true, false")
    if t.checkpoint_every < 1:
        raise ConfigError(f"train.checkpoint_every={t.checkpoint_every} must be >= 1")
    from rolekd_tf.distribute import check_device_names

    check_device_names(t.devices)
    d = cfg.data
    for what in ("train_size", "val_size"):
        v = getattr(d, what)
        if v is not None and v < 1:
            raise ConfigError(f"data.{what}={v} must be >= 1 or null")
    if d.holdout_size < 0:
        raise ConfigError(f"data.holdout_size={d.holdout_size} must be >= 0")
    a = cfg.augment
    if not 0 <= a.cutout <= 32:
        raise ConfigError(f"augment.cutout={a.cutout} must be in 0..32 (0 disables)")
    k = cfg.distill
    _check_choice("distill.kd", k.kd, KD_CHOICES)
    _check_choice("distill.update", k.update, UPDATE_CHOICES)
    if k.mhgd_heads not in (1, 2, 4, 8, 16):
        raise ConfigError(f"distill.mhgd_heads={k.mhgd_heads}; allowed: 1, 2, 4, 8, 16")
    if k.temperature <= 0:
        raise ConfigError(f"distill.temperature={k.temperature} must be > 0")
    if k.mhgd_pretrain_epochs < 0:
        raise ConfigError(f"distill.mhgd_pretrain_epochs={k.mhgd_pretrain_epochs} must be >= 0")
    s = cfg.search
    if s.population < 2:
        raise ConfigError(f"search.population={s.population} must be >= 2 (PBT needs members to compare)")
    if s.ready_interval < 1:
        raise ConfigError(f"search.ready_interval={s.ready_interval} must be >= 1")
    if s.ready_interval > s.epochs:
        raise ConfigError(
            f"search.ready_interval={s.ready_interval} is longer than search.epochs={s.epochs}"
        )
    if not 0 < s.quantile <= 0.5:
        raise ConfigError(f"search.quantile={s.quantile} must be in (0, 0.5]")
    if not 0 <= s.resample_p <= 1:
        raise ConfigError(f"search.resample_p={s.resample_p} must be in [0, 1]")
    p = cfg.pipeline
    for b in p.bits:
        if b not in ALLOWED_BITS or b == 32:
            raise ConfigError(f"pipeline.bits contains {b!r}; allowed: 1..8")
    for r in p.rows:
        if r not in ROWS:
            raise ConfigError(f"pipeline.rows contains {r!r}{_suggest(str(r), list(ROWS))}")
    if not p.seeds or not all(isinstance(x, int) and not isinstance(x, bool) for x in p.seeds):
        raise ConfigError(f"pipeline.seeds={p.seeds!r} must be a non-empty list of integers")
    for o in p.student_set:
        if not isinstance(o, str) or "=" not in o:
            raise ConfigError(f"pipeline.student_set entry {o!r} must look like section.key=value")
    return cfg


def config_from_dict(raw: Any) -> Config:
    """Build and validate a Config from a plain mapping (e.g. parsed YAML)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"a config must be a YAML mapping, got {type(raw).__name__}")
    top = [f.name for f in fields(Config)]
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _SECTIONS:
            kwargs[key] = _build_section(key, _SECTIONS[key], value)
        elif key == "name":
            if not isinstance(value, str) or not value or "/" in value:
                raise ConfigError(f"name={value!r} must be a non-empty string without '/'")
            kwargs[key] = value
        elif key == "seed":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"seed={value!r} must be an integer")
            kwargs[key] = value
        else:
            raise ConfigError(f"unknown config key {key!r}{_suggest(str(key), top)}")
    return validate(Config(**kwargs))


def apply_overrides(raw: dict, overrides: list[str] | None) -> dict:
    """Apply ``section.key=value`` strings (values parsed as YAML) to a raw config mapping."""
    raw = dict(raw or {})
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r} must look like section.key=value")
        key, text = item.split("=", 1)
        try:
            value = yaml.safe_load(text) if text != "" else None
        except yaml.YAMLError:
            value = text
        parts = key.strip().split(".")
        if len(parts) == 1:
            raw[parts[0]] = value
        elif len(parts) == 2:
            sec, k = parts
            section = raw.get(sec)
            section = dict(section) if isinstance(section, dict) else {}
            section[k] = value
            raw[sec] = section
        else:
            raise ConfigError(f"--set {item!r}: keys have at most one dot (section.key)")
    return raw


def _expand_env(raw: Any) -> Any:
    if isinstance(raw, dict):
        return {k: _expand_env(v) for k, v in raw.items()}
    if isinstance(raw, list):
        return [_expand_env(v) for v in raw]
    if isinstance(raw, str) and "$" in raw:
        out = os.path.expandvars(raw)
        if "$" in out:
            raise ConfigError(f"{raw!r} refers to an environment variable that is not set")
        return out
    return raw


def read_yaml(path: str | os.PathLike) -> dict:
    """Parse a YAML config file with the safe loader (data only, never code)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {str(p)!r}{where} is not valid YAML: {getattr(e, 'problem', e)}")
    return raw or {}


def load_config(path: str | os.PathLike | None, overrides: list[str] | None = None) -> Config:
    """Load, override and validate a config. ``path=None`` starts from the defaults."""
    raw = read_yaml(path) if path is not None else {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a YAML mapping")
    raw = apply_overrides(raw, overrides)
    return config_from_dict(_expand_env(raw))


def save_config(cfg: Config, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML, atomically."""
    from rolekd_tf.fileio import atomic_write_text

    atomic_write_text(path, cfg.to_yaml())
