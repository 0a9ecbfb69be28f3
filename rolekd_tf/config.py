"""Run configuration: plain dataclasses, loaded from YAML, validated at load.

A config file is a YAML mapping with the sections below; every key is optional (defaults are
the paper's teacher recipe on CIFAR-10). ``--set section.key=value`` overrides a value (the value
is parsed as YAML, so ``--set train.lr_milestones=[0.5,0.75]`` works). Unknown keys are errors
with a did-you-mean suggestion.

Ranges are declared once, on the field: ``x: float = num(default, lo, hi, lo_open=…,
hi_open=…, unit=…)`` (integers: the closed range ``lo..hi``; ``int | None``/``float | None``
also accept null), ``nums(...)`` for lists of numbers (each entry; optionally strictly
increasing / non-empty / no repeats) and ``one_of(default, choices)`` for fixed sets.
:func:`validate` checks every field against its declaration (NaN and ±inf are outside every
range) and then the cross-field rules; the error text and ``docs/CONFIG.md``
(:func:`ranges_markdown`) come from the same declaration. A new numeric field without one fails
``tests/reliability/test_config_walk.py``, which also walks every key with invalid values.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from rolekd_tf.errors import ConfigError
from rolekd_tf.rows import ROW_NAMES, canonical
from rolekd_tf.search.space import INIT_CHOICES

#: bit widths accepted everywhere (weights and activations; 32 = full precision): the one home,
#: imported by rolekd_tf.quant and rolekd_tf.models
ALLOWED_BITS = tuple(range(1, 9)) + (32,)
LOW_BITS = tuple(b for b in ALLOWED_BITS if b < 32)  #: the quantised widths (pipeline.bits)
KD_CHOICES = ("none", "ii", "soft", "rkd", "mhgd", "svd", "dml")
UPDATE_CHOICES = ("clip_to_task_grad", "weighted_sum", "weighted_clip")
OPTIMIZERS = ("sgd", "adam")
#: where a post-activation ResNet block changes shape (int8.shortcut): a 1×1 projection conv + BN
#: (He et al.'s option B) or the subsampled, channel-zero-padded input (option A)
SHORTCUTS = ("projection", "zero_pad")
#: steps of the exact int8 weight grid (int8.stem_step; rolekd_tf.quant.Int8Grid): integers
#: −⌊127/step⌋…⌊127/step⌋ stored ×step, so 1 (the full int8 grid) … 42 (integers −3…3)
INT8_STEPS = range(1, 43)
#: every seed (top-level, search.seed, pipeline.seeds): int32, so it fits every consumer —
#: keras.utils.set_random_seed (NumPy's legacy seeding needs < 2**32), tf.random.stateless_*
#: seed tensors and numpy.random.default_rng
SEED_MAX = 2**31 - 1
MAX_EPOCHS = 100_000
MAX_IMAGES = 100_000_000  #: data sizes: far above any dataset, far below int32 overflow


# ------------------------------------------------------------------------- declarative ranges
@dataclass(frozen=True)
class Range:
    """Allowed values of a numeric config field (of each entry, for a list field).

    Always finite: NaN and ±inf are outside every range. Integer fields use the closed range
    ``lo..hi``; number fields an interval whose ends are open or closed.
    """

    lo: float
    hi: float
    lo_open: bool = False
    hi_open: bool = False
    unit: str = ""  #: shown in docs/CONFIG.md
    why: str = ""  #: appended to the error message

    def contains(self, v) -> bool:
        if isinstance(v, float) and not math.isfinite(v):
            return False
        above = v > self.lo if self.lo_open else v >= self.lo
        below = v < self.hi if self.hi_open else v <= self.hi
        return bool(above and below)

    def describe(self, integer: bool) -> str:
        if integer:
            return f"an integer in {_fmt(self.lo)}..{_fmt(self.hi)}"
        return f"{'(' if self.lo_open else '['}{_fmt(self.lo)}, {_fmt(self.hi)}{')' if self.hi_open else ']'}"


@dataclass(frozen=True)
class Choice:
    """Allowed values of a field that is one of a fixed set (of each entry, for a list field)."""

    values: tuple
    text: str = ""  #: how the set is shown (default: the values, comma-separated)

    def describe(self) -> str:
        return self.text or ", ".join(str(v) for v in self.values)


def _fmt(x) -> str:
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e15:
        x = int(x)
    return f"{x:g}" if isinstance(x, float) else str(x)


def num(default, lo, hi, *, lo_open=False, hi_open=False, unit="", why=""):
    """A numeric field with its range (the one source of truth: validation, errors, docs)."""
    return field(default=default, metadata={"range": Range(lo, hi, lo_open, hi_open, unit, why)})


def nums(factory, lo, hi, *, lo_open=False, hi_open=False, unit="", increasing=False, nonempty=False,
         unique=False):
    """A list-of-numbers field: each entry in the range, optionally strictly increasing /
    non-empty / without repeats."""
    return field(default_factory=factory, metadata={
        "range": Range(lo, hi, lo_open, hi_open, unit), "increasing": increasing,
        "nonempty": nonempty, "unique": unique})


def one_of(default, values, text="", *, factory=False):
    """A field (or, with ``factory``, a list field) whose value(s) come from a fixed set."""
    meta = {"choices": Choice(tuple(values), text)}
    if factory:
        return field(default_factory=default, metadata=meta)
    return field(default=default, metadata=meta)


# ------------------------------------------------------------------------------ sections
@dataclass
class DataConfig:
    #: ``embedded:digits`` | a TFDS name (``cifar10``) | ``imagefolder:PATH`` (folder or .tar.gz).
    #: ``${ENV}`` references are expanded, so paths can come from the environment.
    dataset: str = "embedded:digits"
    #: images in the (reduced) training split; None = the rest
    train_size: int | None = num(None, 1, MAX_IMAGES, unit="images")
    #: images in the validation split (search objective, val metrics)
    val_size: int | None = num(None, 1, MAX_IMAGES, unit="images")
    #: images held back for final evaluation only (fixed, seed-independent)
    holdout_size: int = num(0, 0, MAX_IMAGES, unit="images")
    cache_dir: str | None = None  #: where archives are extracted / decoded arrays cached
    #: the dataset's OWN test split, evaluated once on each final model (metrics.json
    #: ``test_accuracy``) and never read by a search: null = its ``test`` split if it has one (TFDS
    #: ``test``, an image folder's ``test/`` beside ``train/``), a name = that split (an error if
    #: missing), ``none`` = no test split
    test_split: str | None = None


@dataclass
class ModelConfig:
    name: str = "resnet20"
    w_bits: int = one_of(32, ALLOWED_BITS, "1..8 or 32")  #: weight bits (32 = full precision)
    a_bits: int = one_of(32, ALLOWED_BITS, "1..8 or 32")  #: activation bits (32 = full precision)
    #: BatchNormalization momentum: 0.99 as in role-kd; short CPU runs (a few hundred steps) need
    #: ~0.9 or the inference-mode statistics lag far behind the weights.
    bn_momentum: float = num(0.99, 0, 1, hi_open=True, unit="fraction kept per step")


@dataclass(frozen=True)
class Int8Exactness:
    """The int8-exact model variant (post-activation ResNets only; every option off by default):
    what makes the int8 TFLite file reproduce the Keras model's arithmetic (docs/ARCHITECTURE.md,
    "int8 exactness"). One typed setting: the config's ``int8`` section, read by
    :func:`rolekd_tf.models.build_model`; validated once, here, when it is constructed (a bad value
    is a one-line :class:`~rolekd_tf.errors.ConfigError`). Teacher, ``--init`` run and student must
    agree on ``stem`` (it changes the input normalisation)."""

    #: the first conv's kernel is fake-quantised on a per-output-channel int8 grid
    #: (:class:`rolekd_tf.quant.Int8Grid`) and the model takes ``(pixels − 128)/64`` (no per-channel
    #: mean/std), so the int8 file stores that conv exactly
    stem: bool = False
    #: the exact stem's integer weights are multiples of this (its kernel is trained on the
    #: integers −⌊127/step⌋…⌊127/step⌋ per channel, stored ×step): step ≥ 2 leaves the stem's
    #: integer bias room to keep every threshold of a ≥ 3-bit quantiser (1 = the full int8 grid)
    stem_step: int = num(1, INT8_STEPS.start, INT8_STEPS.stop - 1, unit="int8 steps")
    #: projection blocks compute ``BN(conv2(mid) + proj(x))`` (one BN after the add), so the int8
    #: export merges both convs into one exact accumulator
    shared_proj_bn: bool = False
    #: where a block changes shape: ``projection`` (1×1 conv + BN, option B) or ``zero_pad``
    #: (subsampled, channel-zero-padded quantised input, He et al.'s option A: no weights, and the
    #: int8 export's residual add is exact)
    shortcut: str = one_of("projection", SHORTCUTS)
    #: the last block's output is the a_bits quantiser (not an FP ReLU) and the ``logits`` kernel
    #: lies on a per-channel int8 grid, so the int8 export's last add, global average pool and
    #: logits accumulator are exact
    tail: bool = False
    #: with ``tail`` and a_bits < 32: constant gain of the logits kernel (its pooled inputs are in
    #: [0, 1]; gain 1 learned too slowly, 4 gave 92.6 % on the 6-epoch digits w2a2 benchmark, 16
    #: diverged); the product is still on a per-channel int8 grid
    tail_gain: float = num(4.0, 0, 1000, lo_open=True, unit="factor")

    def __post_init__(self):
        for f in fields(self):
            value = _coerce(f"int8.{f.name}", getattr(self, f.name), f)
            _check_field(f"int8.{f.name}", value, f)
            object.__setattr__(self, f.name, value)
        if self.stem_step != 1 and not self.stem:
            raise ConfigError(f"int8.stem_step={self.stem_step} needs int8.stem=true")
        if self.shared_proj_bn and self.shortcut != "projection":
            raise ConfigError(f"int8.shared_proj_bn=true needs int8.shortcut=projection (got {self.shortcut!r})")

    @property
    def enabled(self) -> list[str]:
        """The options set away from their defaults, as ``int8.key=value`` (empty: the plain model)."""
        default = Int8Exactness()
        return [f"int8.{f.name}={_yaml_word(getattr(self, f.name))}" for f in fields(self)
                if getattr(self, f.name) != getattr(default, f.name)
                and not (f.name == "tail_gain" and not self.tail)]


def _yaml_word(v) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


@dataclass
class TrainConfig:
    epochs: int = num(200, 1, MAX_EPOCHS, unit="epochs")
    batch_size: int = num(128, 2, 65_536, unit="images", why="KD losses need pairs")
    optimizer: str = one_of("sgd", OPTIMIZERS)  #: sgd (Nesterov momentum) | adam
    lr: float = num(0.1, 0, 10, lo_open=True, unit="learning rate at epoch 0")
    momentum: float = num(0.9, 0, 1, hi_open=True, unit="SGD momentum")
    nesterov: bool = True
    adam_epsilon: float = num(1e-5, 0, 1, lo_open=True, unit="Adam ε")
    #: coupled L2 on conv/dense kernels only
    weight_decay: float = num(5e-4, 0, 1, unit="L2 coefficient")
    #: fractions of epochs where the LR is multiplied by lr_gamma (strictly increasing)
    lr_milestones: list[float] = nums(lambda: [0.3, 0.6, 0.9], 0, 1, lo_open=True, hi_open=True,
                                      unit="fraction of epochs", increasing=True)
    #: LR factor per milestone (1 = constant LR; > 1 or ≤ 0 is refused)
    lr_gamma: float = num(0.1, 0, 1, lo_open=True, unit="factor")
    #: global-norm clipping (PBA's child model: 5); None = off
    grad_clip_norm: float | None = num(None, 0, 1e6, lo_open=True, unit="global L2 norm")
    jit_compile: Any = "auto"  #: auto | true | false — auto = off on CPU (measured slower), on with a GPU
    checkpoint_every: int = num(1, 1, MAX_EPOCHS, unit="epochs")  #: epochs between resumable checkpoints
    #: tf.config.experimental.enable_op_determinism(): bitwise-reproducible runs (slower kernels)
    deterministic: bool = False
    #: devices to train on with tf.distribute.MirroredStrategy, e.g. ["/gpu:0", "/gpu:1"];
    #: None = all visible GPUs when there are two or more, else one device (rolekd_tf.distribute)
    devices: list[str] | None = None


@dataclass
class AugmentConfig:
    schedule: str | None = None  #: schedule file (our JSON, PBA text, Ray-Tune log); None = baseline only
    #: epoch count of a PBA/Ray-Tune log's search (needed to parse it)
    schedule_epochs: int | None = num(None, 1, MAX_EPOCHS, unit="epochs")
    stretch: bool = True  #: stretch a shorter schedule by an integer multiple; never silently reused
    pad_crop: bool = True
    flip: bool = True
    #: side of the baseline Cutout square; 0 disables
    cutout: int = num(16, 0, 32, unit="px", why="0 disables")


@dataclass
class DistillConfig:
    kd: str = one_of("none", KD_CHOICES)  #: none | ii | soft | rkd | mhgd | svd | dml
    #: clip_to_task_grad (released code) | weighted_sum (paper Eq. 10, no clipping) |
    #: weighted_clip (paper §5.2: Eq. 10 with KD-SVD's per-variable clipping of λ·∇L_KD)
    update: str = one_of("clip_to_task_grad", UPDATE_CHOICES)
    lambda_init: float = num(0.4, 0, 100, unit="KD loss weight λ at epoch 0")
    lambda_decay: float = num(0.5, 0, 1, lo_open=True, unit="factor per λ milestone")
    lambda_milestones: list[float] = nums(lambda: [0.3, 0.6, 0.9], 0, 1, lo_open=True, hi_open=True,
                                          unit="fraction of epochs", increasing=True)
    #: τ_w = ‖∇CE‖·sigmoid(epoch − e0)
    clip_e0: float = num(0.0, 0, MAX_EPOCHS, unit="epochs")
    temperature: float = num(3.0, 0, 100, lo_open=True, unit="softmax temperature")
    soft_alpha: float = num(0.3, 0, 1, unit="weight of the soft-label loss")
    mhgd_heads: int = one_of(4, (1, 2, 4, 8, 16))
    #: 0 = released code (random frozen heads), 40 = original MHGD
    mhgd_pretrain_epochs: int = num(0, 0, MAX_EPOCHS, unit="epochs")
    adapter: bool = False  #: 1×1 adapters on student taps when channel counts differ


@dataclass
class SearchConfig:
    population: int = num(16, 2, 1024, unit="members", why="PBT needs members to compare")
    ready_interval: int = num(3, 1, MAX_EPOCHS, unit="epochs")  #: at most search.epochs
    epochs: int = num(200, 1, MAX_EPOCHS, unit="epochs")
    quantile: float = num(0.25, 0, 0.5, lo_open=True, unit="fraction of the population")
    resample_p: float = num(0.2, 0, 1, unit="probability")
    perturb_max: int = num(3, 0, 10, unit="policy levels")
    #: PBT decisions (exploit/explore); None = the top-level seed
    seed: int | None = num(None, 0, SEED_MAX, unit="seed")
    #: the search's own (reduced) data: when either is set, members train on ``train_size`` images
    #: and are scored on ``val_size`` (null = every image left), cut seeded and class-balanced
    #: from the training data minus ``data.holdout_size`` as ``data.*`` are; both null = the
    #: search uses ``data.train_size``/``data.val_size``. Final trainings always use ``data.*``.
    train_size: int | None = num(None, 1, MAX_IMAGES, unit="images")
    val_size: int | None = num(None, 1, MAX_IMAGES, unit="images")
    #: members' start policies: "zeros" (PBA) | "random" (one PBA explore step from zeros per
    #: member, seeded by the search seed) — see rolekd_tf/search/space.py, search/informative.py
    init: str = one_of("zeros", INIT_CHOICES)


#: every pipeline row name (rolekd_tf.rows is the row table: what each row trains)
ROWS = ROW_NAMES
#: Table 2 complete plus Table 3's II-KD + A_T row
DEFAULT_ROWS = ("vanilla_fp", "stage_alpha", "vanilla_lowbit", "alpha_lowbit", "only_iikd", "stage_beta",
                "student_at")
STUDENT_SEARCHES = ("iikd", "per_kd")


@dataclass
class PipelineConfig:
    """What ``python -m rolekd_tf.pipeline`` runs (rows of the paper's Tables 1–4)."""

    #: student bit widths (w = a)
    bits: list[int] = one_of(lambda: [2], LOW_BITS, "1..8", factory=True)
    #: seeds of the final trainings (non-empty, no repeats)
    seeds: list[int] = nums(lambda: [0], 0, SEED_MAX, unit="seed", nonempty=True, unique=True)
    rows: list[str] = one_of(lambda: list(DEFAULT_ROWS), ROWS, factory=True)  #: names from rolekd_tf.rows
    #: overrides (``section.key=value``) that turn the teacher recipe into the recipe of a student
    #: initialised from the teacher (rows trained from scratch keep the config's own recipe)
    student_set: list[str] = field(default_factory=lambda: [
        "train.optimizer=adam", "train.lr=0.001", "train.weight_decay=1e-5",
        "train.lr_milestones=[0.3,0.6,0.8]"])
    #: A_T from this schedule file instead of a stage α search (paper §5.1: CIFAR-100 reuses
    #: CIFAR-10's A_T); null = search it
    teacher_schedule: str | None = None
    #: ``iikd``: one stage β search per student network, with II-KD (the paper); its A_S serves
    #: every KD row. ``per_kd``: one search per KD loss, each row trains with its own loss's A_S.
    student_search: str = one_of("iikd", STUDENT_SEARCHES)
    export: bool = True
    #: add the tfmot 8-bit QAT baseline row (benchmarks/tfmot_baseline.py in its own process with
    #: TF_USE_LEGACY_KERAS=1; needs the optional extra ``pip install -e '.[tfmot]'``)
    tfmot: bool = False


@dataclass
class Config:
    name: str = "run"
    seed: int = num(0, 0, SEED_MAX, unit="seed")  #: data split/order, init, augmentation draws
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    int8: Int8Exactness = field(default_factory=Int8Exactness)
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
    "int8": Int8Exactness,
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


def _show(value: Any) -> str:
    """``repr`` cut to one short line (a 1000-digit integer must not flood the error)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:40] + "…" + text[-10:]


def _allowed(f: dataclasses.Field) -> str:
    """The allowed values of field ``f`` as shown in errors and docs/CONFIG.md."""
    ann = str(f.type).replace(" ", "")
    rng, ch = f.metadata.get("range"), f.metadata.get("choices")
    if rng is not None:
        text = rng.describe(integer="int" in ann)
    elif ch is not None:
        text = ch.describe()
    else:
        return ""
    if ann.startswith("list"):
        text = f"each entry {text}" + ("; strictly increasing" if f.metadata.get("increasing") else "")
        if f.metadata.get("nonempty"):
            text = "a non-empty list, " + text
        if f.metadata.get("unique"):
            text += "; no repeats"
    elif "None" in ann:
        text += ", or null"
    return text


def _coerce(where: str, value: Any, f: dataclasses.Field) -> Any:
    """Check ``value`` against the field's declared type (bool/int/float/str/list/None)."""
    ann = str(f.type).replace(" ", "")
    optional = "None" in ann
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where} must not be empty")
    if ann.startswith("bool"):
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}={_show(value)} must be true or false")
    if ann.startswith("int"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}={_show(value)} must be an integer")
        return value
    if ann.startswith("float"):
        if isinstance(value, str):
            # YAML 1.1 reads "1e-5" (no dot) as a string; accept any float literal.
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}={_show(value)} must be a number")
        try:
            return float(value)
        except OverflowError:  # an integer beyond float range: out of every range
            raise ConfigError(f"{where}={_show(value)} is out of range; allowed: {_allowed(f)}") from None
    if ann.startswith("list"):
        kind = ann[5:-1] if ann.endswith("]") else ""
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}={_show(value)} must be a list")
        for v in value:
            ok = {"float": isinstance(v, (int, float)), "int": isinstance(v, int),
                  "str": isinstance(v, str)}.get(kind, True) and not (kind != "str" and isinstance(v, bool))
            if not ok:
                what = {"float": "numbers", "int": "integers", "str": "strings"}[kind]
                raise ConfigError(f"{where}={_show(value)} must be a list of {what}")
        if kind == "float":
            try:
                return [float(v) for v in value]
            except OverflowError:
                raise ConfigError(f"{where}={_show(value)} is out of range; allowed: {_allowed(f)}") from None
        return list(value)
    if ann.startswith("str"):
        if not isinstance(value, str):
            raise ConfigError(f"{where}={_show(value)} must be a string")
        return value
    return value


def _build_section(name: str, cls, raw: Any):
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config section {name!r} must be a mapping, got {type(raw).__name__}")
    allowed = [f.name for f in fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        if name == "model" and key in LEGACY_INT8_KEYS:
            raise ConfigError(f"config key 'model.{key}' is now 'int8.{LEGACY_INT8_KEYS[key]}'")
        if key not in allowed:
            raise ConfigError(f"unknown config key '{name}.{key}'{_suggest(str(key), allowed)}")
        f = next(f for f in fields(cls) if f.name == key)
        kwargs[key] = _coerce(f"{name}.{key}", value, f)
    return cls(**kwargs)


def _check_choice(where: str, value: str, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{where}={value!r} is not allowed{_suggest(str(value), list(choices))}")


def _check_field(where: str, value: Any, f: dataclasses.Field) -> None:
    """Check one field against its declared Range / Choice (the same text the docs show)."""
    rng, ch = f.metadata.get("range"), f.metadata.get("choices")
    if value is None or (rng is None and ch is None):
        return
    is_list = str(f.type).replace(" ", "").startswith("list")
    entries = list(value) if is_list else [value]
    for v in entries:
        if ch is not None and isinstance(v, str):
            if is_list and v not in ch.values:
                raise ConfigError(f"{where} contains {_show(v)}{_suggest(v, list(ch.values))}")
            _check_choice(where, v, ch.values)
            continue
        bad = (isinstance(v, bool) or not isinstance(v, (int, float))
               or (ch is not None and v not in ch.values) or (rng is not None and not rng.contains(v)))
        if bad:
            if is_list:
                raise ConfigError(f"{where} contains {_show(v)}; allowed: {_allowed(f)}")
            why = f" ({rng.why})" if rng is not None and rng.why else ""
            raise ConfigError(f"{where}={_show(v)} is out of range; allowed: {_allowed(f)}{why}")
    if is_list:
        if f.metadata.get("nonempty") and not entries:
            raise ConfigError(f"{where}=[] must not be empty; allowed: {_allowed(f)}")
        if f.metadata.get("increasing") and any(b <= a for a, b in zip(entries, entries[1:])):
            raise ConfigError(f"{where}={_show(value)} must be strictly increasing; allowed: {_allowed(f)}")
        if f.metadata.get("unique") and len(set(entries)) != len(entries):
            raise ConfigError(f"{where}={_show(value)} repeats an entry; allowed: {_allowed(f)}")


def config_fields(cfg: "Config | None" = None):
    """Every config key: ``(dotted key, dataclasses.Field, value)`` (value from ``cfg``, else the
    default), in file order; the tests walk this to cover every key."""
    cfg = cfg if cfg is not None else Config()
    out = []
    for f in fields(Config):
        if f.name in _SECTIONS:
            section = getattr(cfg, f.name)
            out.extend((f"{f.name}.{g.name}", g, getattr(section, g.name)) for g in fields(section))
        else:
            out.append((f.name, f, getattr(cfg, f.name)))
    return out


def validate(cfg: Config) -> Config:
    """Check every field against its declared range/choices, then the cross-field rules; raise
    ConfigError naming the first bad value."""
    for key, f, value in config_fields(cfg):
        if not key.startswith("int8."):  # Int8Exactness validates itself when it is built
            _check_field(key, value, f)
    if cfg.train.jit_compile not in ("auto", True, False):
        raise ConfigError(f"train.jit_compile={_show(cfg.train.jit_compile)}; allowed: auto, true, false")
    from rolekd_tf.distribute import check_device_names

    check_device_names(cfg.train.devices)
    d = cfg.data
    if d.test_split is not None:
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$", d.test_split):
            raise ConfigError(f"data.test_split={d.test_split!r} must be a split name (letters, digits, "
                              "_ . -), none, or null (the dataset's own test split)")
        if d.test_split == "train":
            raise ConfigError("data.test_split='train' is not allowed: the test split must be data the "
                              "model never trains on; name another split, none, or null")
    s = cfg.search
    if s.ready_interval > s.epochs:
        raise ConfigError(
            f"search.ready_interval={s.ready_interval} is longer than search.epochs={s.epochs}"
        )
    p = cfg.pipeline
    needy = [r for r in p.rows if canonical(r).kd != "none" or canonical(r).init == "teacher"]
    if needy and not any(canonical(r).teacher for r in p.rows):
        raise ConfigError(f"pipeline.rows has {needy[0]!r}, which needs a teacher, but no teacher row; "
                          "add vanilla_fp or stage_alpha")
    if p.teacher_schedule is not None and not p.teacher_schedule.strip():
        raise ConfigError("pipeline.teacher_schedule is empty; give a schedule file or null")
    for o in cfg.pipeline.student_set:
        if "=" not in o:
            raise ConfigError(f"pipeline.student_set entry {o!r} must look like section.key=value")
    return cfg


def ranges_markdown() -> str:
    """The table of every numeric / choice key with its default, allowed values and unit
    (docs/CONFIG.md is this text; a test keeps them equal)."""
    rows = ["| key | default | allowed | unit |", "|---|---|---|---|"]
    for key, f, default in config_fields():
        allowed = _allowed(f)
        if not allowed:
            continue
        rng = f.metadata.get("range")
        unit = rng.unit if rng is not None else ""
        why = f" ({rng.why})" if rng is not None and rng.why else ""
        d = "null" if default is None else default
        rows.append(f"| `{key}` | `{d}` | {allowed}{why} | {unit} |")
    return "\n".join(rows) + "\n"


#: keys of the int8-exact variant that configs before the ``int8`` section had under ``model``
LEGACY_INT8_KEYS = {"exact_stem": "stem", "exact_stem_step": "stem_step", "shared_proj_bn": "shared_proj_bn",
                    "shortcut": "shortcut", "exact_tail": "tail"}


def upgrade_legacy_keys(raw: Any) -> Any:
    """A raw config mapping with the ``model.*`` keys of :data:`LEGACY_INT8_KEYS` moved into the
    ``int8`` section (for ``config.yaml`` files of run directories written before it existed;
    user configs get a one-line error naming the new key instead)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("model"), dict):
        return raw
    model = dict(raw["model"])
    moved = {new: model.pop(old) for old, new in LEGACY_INT8_KEYS.items() if old in model}
    if not moved:
        return raw
    int8 = dict(raw.get("int8") or {})
    int8.update(moved)
    return {**raw, "model": model, "int8": int8}


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
            from rolekd_tf.rundir import check_name

            kwargs[key] = check_name(value)
        elif key == "seed":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"seed={_show(value)} must be an integer")
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
        except (yaml.YAMLError, ValueError):  # ValueError: an integer of > 4300 digits
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
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {str(p)!r} is not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    except ValueError as e:  # e.g. an integer literal of > 4300 digits
        raise ConfigError(f"config file {str(p)!r} is not valid YAML: {str(e)[:120]}") from None
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
