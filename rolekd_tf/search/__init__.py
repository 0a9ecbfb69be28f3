"""PBT augmentation search (PBA) on Keras Tuner: space (explore), oracle (PBTOracle),
tuner (PBTTuner), lineage (Ray-Tune logs → schedule), run (the ``search.py`` CLI)."""
from rolekd_tf.augment.policy import POLICY_LEN  # noqa: F401
from rolekd_tf.search.space import explore, initial_policy  # noqa: F401

__all__ = ["POLICY_LEN", "explore", "initial_policy", "PBTOracle", "PBTTuner"]


def __getattr__(name):  # lazy: keras_tuner (and TF) only when the oracle / tuner is used
    if name == "PBTOracle":
        from rolekd_tf.search.oracle import PBTOracle

        return PBTOracle
    if name == "PBTTuner":
        from rolekd_tf.search.tuner import PBTTuner

        return PBTTuner
    raise AttributeError(name)
