"""PBA's augmentation search space as batched TF ops, policies/schedules, and the tf.data pipeline.

``policy`` (pure Python) is importable without TensorFlow; the ops and pipeline load lazily.
"""
from rolekd_tf.augment.policy import (  # noqa: F401
    OP_ORDER,
    Policy,
    Schedule,
    load_schedule,
    parse_pba_log,
    write_lineage_log,
)

_LAZY = {
    "OP_NAMES": "rolekd_tf.augment.ops",
    "apply_op_by_index": "rolekd_tf.augment.ops",
    "apply_policy": "rolekd_tf.augment.apply",
    "baseline_augment": "rolekd_tf.augment.apply",
    "sample_policy_ops": "rolekd_tf.augment.apply",
    "PolicyTable": "rolekd_tf.augment.pipeline",
    "SetPolicyCallback": "rolekd_tf.augment.pipeline",
    "make_train_dataset": "rolekd_tf.augment.pipeline",
    "make_eval_dataset": "rolekd_tf.augment.pipeline",
    "write_preview": "rolekd_tf.augment.preview",
    "plot_schedule": "rolekd_tf.augment.plot",
    "schedule_op_stats": "rolekd_tf.augment.plot",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rolekd_tf.augment' has no attribute {name!r}")
