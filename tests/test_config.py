"""Config loading: defaults, overrides, validation with did-you-mean, env expansion."""
import pytest

from rolekd_tf.config import apply_overrides, config_from_dict, load_config
from rolekd_tf.errors import ConfigError


def test_defaults_are_the_paper_teacher_recipe():
    cfg = config_from_dict({})
    assert cfg.train.epochs == 200 and cfg.train.batch_size == 128
    assert cfg.train.lr == 0.1 and cfg.train.weight_decay == 5e-4 and cfg.train.nesterov
    assert cfg.search.population == 16 and cfg.search.ready_interval == 3


def test_overrides_parse_yaml_values():
    raw = apply_overrides({"train": {"epochs": 3}}, ["train.epochs=5", "train.lr_milestones=[0.5]",
                                                     "model.w_bits=2", "name=x"])
    cfg = config_from_dict(raw)
    assert cfg.train.epochs == 5 and cfg.train.lr_milestones == [0.5]
    assert cfg.model.w_bits == 2 and cfg.name == "x"


def test_model_variant_options():
    cfg = config_from_dict({})
    assert cfg.int8.shortcut == "projection" and not cfg.int8.tail
    cfg = config_from_dict(apply_overrides({}, ["int8.shortcut=zero_pad", "int8.tail=true"]))
    assert cfg.int8.shortcut == "zero_pad" and cfg.int8.tail is True


@pytest.mark.parametrize(
    "raw, needle",
    [
        ({"model": {"w_bit": 2}}, "did you mean 'w_bits'"),
        ({"trian": {}}, "did you mean 'train'"),
        ({"model": {"w_bits": 0}}, "model.w_bits=0"),
        ({"model": {"a_bits": 33}}, "model.a_bits=33"),
        ({"distill": {"kd": "iikd"}}, "distill.kd='iikd'"),
        ({"distill": {"update": "sum"}}, "distill.update"),
        ({"train": {"epochs": "ten"}}, "train.epochs='ten'"),
        ({"train": {"optimizer": "rmsprop"}}, "train.optimizer='rmsprop'"),
        ({"train": {"lr_milestones": [1.5]}}, "lr_milestones"),
        ({"search": {"population": 1}}, "search.population=1"),
        ({"search": {"ready_interval": 9, "epochs": 4}}, "longer than search.epochs=4"),
        ({"model": "resnet20"}, "must be a mapping"),
        ({"int8": {"shortcut": "zeropad"}}, "int8.shortcut='zeropad'"),
        ({"int8": {"shortcut": "zero_pad", "shared_proj_bn": True}}, "int8.shared_proj_bn"),
        ({"int8": {"stem": True, "stem_step": 0}}, "int8.stem_step=0 is out of range"),
        ({"int8": {"stem": True, "stem_step": 64}}, "allowed: an integer in 1..42"),
        ({"int8": {"stem_step": 4}}, "int8.stem_step=4 needs int8.stem=true"),
    ],
)
def test_bad_values_name_the_culprit(raw, needle):
    with pytest.raises(ConfigError) as e:
        config_from_dict(raw)
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"stem_step": 4}, "int8.stem_step=4 needs int8.stem=true"),
        ({"stem": True, "stem_step": 43}, "int8.stem_step=43 is out of range; allowed: an integer in 1..42"),
        ({"stem": "yes"}, "int8.stem='yes' must be true or false"),
        ({"shortcut": "option_a"}, "int8.shortcut='option_a' is not allowed"),
        ({"shortcut": "zero_pad", "shared_proj_bn": True}, "int8.shared_proj_bn=true needs int8.shortcut=projection"),
        ({"tail": True, "tail_gain": float("nan")}, "int8.tail_gain=nan is out of range; allowed: (0, 1000]"),
    ],
)
def test_int8_exactness_validates_once_when_built(kwargs, needle):
    """The int8 section validates itself when constructed (from a config file or in Python): one
    rule, one place, one-line ConfigError; a valid one is frozen."""
    import dataclasses

    from rolekd_tf.config import Int8Exactness

    with pytest.raises(ConfigError) as e:
        Int8Exactness(**kwargs)
    assert needle in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConfigError) as e:
        config_from_dict({"int8": kwargs})
    assert needle in str(e.value)
    ok = Int8Exactness(stem=True, stem_step=12, tail=True, tail_gain=2)
    assert ok.tail_gain == 2.0 and ok.enabled == ["int8.stem=true", "int8.stem_step=12", "int8.tail=true",
                                                  "int8.tail_gain=2.0"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ok.stem = False


def test_int8_keys_of_old_configs():
    """``model.exact_stem`` & co. moved to the ``int8`` section: a user config naming the old key
    gets one line naming the new one; run directories written before are upgraded on read."""
    from rolekd_tf.config import upgrade_legacy_keys

    with pytest.raises(ConfigError, match="config key 'model.exact_tail' is now 'int8.tail'"):
        config_from_dict({"model": {"exact_tail": True}})
    old = {"model": {"name": "resnet20", "exact_stem": True, "exact_stem_step": 12, "shared_proj_bn": False,
                     "shortcut": "zero_pad", "exact_tail": True}}
    cfg = config_from_dict(upgrade_legacy_keys(old))
    assert (cfg.int8.stem, cfg.int8.stem_step, cfg.int8.shortcut, cfg.int8.tail) == (True, 12, "zero_pad", True)
    assert cfg.model.name == "resnet20"


def test_env_expansion(tmp_path, monkeypatch):
    p = tmp_path / "c.yaml"
    p.write_text("data:\n  dataset: imagefolder:${MY_DATA}\n")
    monkeypatch.setenv("MY_DATA", "/x/y.tar.gz")
    assert load_config(p).data.dataset == "imagefolder:/x/y.tar.gz"
    monkeypatch.delenv("MY_DATA")
    with pytest.raises(ConfigError, match="environment variable"):
        load_config(p)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_shipped_configs_validate(monkeypatch):
    import glob

    monkeypatch.setenv("ROLEKD_CIFAR10_TAR", "/nonexistent.tar.gz")
    files = sorted(glob.glob("configs/**/*.yaml", recursive=True))
    assert len(files) >= 4
    for f in files:
        load_config(f)


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"train": {"lr_gamma": -0.1}}, "train.lr_gamma=-0.1 is out of range; allowed: (0, 1]"),
        ({"train": {"lr": float("nan")}}, "train.lr=nan is out of range; allowed: (0, 10]"),
        ({"train": {"momentum": float("inf")}}, "train.momentum=inf is out of range; allowed: [0, 1)"),
        ({"model": {"bn_momentum": float("nan")}}, "model.bn_momentum=nan is out of range; allowed: [0, 1)"),
        ({"seed": 2**31}, "seed=2147483648 is out of range; allowed: an integer in 0..2147483647"),
        ({"train": {"epochs": 10**12}}, "train.epochs=1000000000000 is out of range; allowed: an integer in 1..100000"),
        ({"train": {"batch_size": 10**9}}, "train.batch_size=1000000000 is out of range; allowed: an integer in "
                                           "2..65536 (KD losses need pairs)"),
        ({"search": {"seed": -1}}, "search.seed=-1 is out of range; allowed: an integer in 0..2147483647, or null"),
        ({"train": {"grad_clip_norm": 0}}, "train.grad_clip_norm=0.0 is out of range; allowed: (0, 1000000], or null"),
        ({"distill": {"lambda_milestones": [0.6, 0.3]}}, "distill.lambda_milestones=[0.6, 0.3] must be strictly increasing"),
        ({"train": {"lr_milestones": [0.5, float("nan")]}}, "train.lr_milestones contains nan"),
        ({"pipeline": {"seeds": [1, 1]}}, "pipeline.seeds=[1, 1] repeats an entry"),
        ({"pipeline": {"bits": 2}}, "pipeline.bits=2 must be a list"),
        ({"pipeline": {"bits": [True]}}, "pipeline.bits=[True] must be a list of integers"),
        ({"pipeline": {"rows": "vanilla_fp"}}, "pipeline.rows='vanilla_fp' must be a list"),
        ({"train": {"lr": 10**400}}, "train.lr=1000000000000000000000000000000000000000…0000000000 is out of range"),
    ],
)
def test_ranges_refuse_nan_inf_and_overflow_with_the_range(raw, message):
    with pytest.raises(ConfigError) as e:
        config_from_dict(raw)
    assert message in str(e.value)


def test_range_bounds_themselves_are_accepted():
    cfg = config_from_dict({"seed": 2**31 - 1, "train": {"lr": 10, "lr_gamma": 1, "momentum": 0, "epochs": 100_000},
                            "distill": {"lambda_init": 0, "soft_alpha": 1}, "search": {"quantile": 0.5}})
    assert cfg.seed == 2**31 - 1 and cfg.train.lr_gamma == 1.0 and cfg.search.quantile == 0.5


def test_huge_integer_literal_in_set_is_a_config_error():
    big = "9" * 5000  # Python refuses int() of > 4300 digits: YAML's int constructor raises ValueError
    with pytest.raises(ConfigError, match="train.epochs="):
        load_config(None, [f"train.epochs={big}"])


def test_test_split_and_search_data_sizes():
    cfg = config_from_dict({})
    assert cfg.data.test_split is None and cfg.search.train_size is None and cfg.search.val_size is None
    cfg = config_from_dict(apply_overrides({}, ["data.test_split=none", "search.train_size=4000",
                                                "search.val_size=1000", "data.holdout_size=0"]))
    assert cfg.data.test_split == "none" and (cfg.search.train_size, cfg.search.val_size) == (4000, 1000)
    assert config_from_dict({"data": {"test_split": "validation"}}).data.test_split == "validation"


@pytest.mark.parametrize("raw, needle", [
    ({"data": {"test_split": "train"}}, "data.test_split='train'"),
    ({"data": {"test_split": "../x"}}, "data.test_split='../x'"),
    ({"data": {"test_split": 3}}, "data.test_split=3"),
    ({"search": {"train_size": 0}}, "search.train_size=0"),
    ({"search": {"val_size": -5}}, "search.val_size=-5"),
    ({"search": {"train_size": 1.5}}, "search.train_size=1.5"),
])
def test_test_split_and_search_sizes_refused(raw, needle):
    with pytest.raises(ConfigError) as e:
        config_from_dict(raw)
    assert needle in str(e.value) and "\n" not in str(e.value)
