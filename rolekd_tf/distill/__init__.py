"""Knowledge distillation: losses (registry ``LOSSES``), the ``Distiller`` model, callbacks, and
the checkpoint format of a training run (``checkpoint``)."""
from rolekd_tf.distill.callbacks import EpochTracker, LambdaSchedule
from rolekd_tf.distill.distiller import Distiller, clip_to_bound, clipped_kd_update
from rolekd_tf.distill.losses import LOSSES, get_loss

__all__ = ["LOSSES", "get_loss", "Distiller", "EpochTracker", "LambdaSchedule", "clip_to_bound",
           "clipped_kd_update"]
