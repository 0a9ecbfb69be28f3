"""Callbacks that drive the :class:`~rolekd_tf.distill.Distiller`'s non-trainable variables.

* :class:`EpochTracker` — sets ``model.epoch`` (float variable) to the current epoch at epoch begin;
  the clip rule's ``sigmoid(epoch − e0)`` reads it inside the compiled step (no retrace).
* :class:`LambdaSchedule` — ``λ = λ0 · factor^(#boundaries passed)``. Paper (``weighted_sum``,
  ``weighted_clip``):
  ×0.5 at every 30 % of the epochs; released code (``clip_to_task_grad``): ×0.6 at 30/60/80 %,
  logged only (λ never reaches the gradient there).
"""
from __future__ import annotations

import keras


class EpochTracker(keras.callbacks.Callback):
    """Write the epoch index into ``model.epoch`` at every epoch begin (resumes with
    ``initial_epoch`` correctly, because ``fit`` passes the absolute epoch)."""

    def on_epoch_begin(self, epoch, logs=None):
        self.model.epoch.assign(float(epoch))


class LambdaSchedule(keras.callbacks.Callback):
    """Step decay of ``model.kd_lambda``.

    Args:
      epochs: total epochs of the run.
      lambda_init: λ0 (default: the model's ``lambda_init``).
      factor: multiplier per boundary (paper 0.5, code 0.6).
      fractions: boundaries as fractions of ``epochs`` (paper ``(0.3, 0.6, 0.9)``, code
        ``(0.3, 0.6, 0.8)``); λ is multiplied once when ``epoch ≥ round(f·epochs)``.
    :meth:`for_update` picks the paper or code preset from the distiller's ``update`` rule.
    """

    def __init__(self, epochs, *, lambda_init=None, factor=0.5, fractions=(0.3, 0.6, 0.9)):
        super().__init__()
        self.epochs = int(epochs)
        self.lambda_init = lambda_init
        self.factor = float(factor)
        self.fractions = tuple(float(f) for f in fractions)
        self.boundaries = [int(round(f * self.epochs)) for f in self.fractions]

    @classmethod
    def for_update(cls, update, epochs, lambda_init=None):
        if update == "clip_to_task_grad":
            return cls(epochs, lambda_init=lambda_init, factor=0.6, fractions=(0.3, 0.6, 0.8))
        return cls(epochs, lambda_init=lambda_init, factor=0.5, fractions=(0.3, 0.6, 0.9))

    def value(self, epoch, lambda_init):
        n = sum(1 for b in self.boundaries if epoch >= b)
        return float(lambda_init) * self.factor**n

    def on_epoch_begin(self, epoch, logs=None):
        lam0 = self.lambda_init if self.lambda_init is not None else self.model.lambda_init
        self.model.kd_lambda.assign(self.value(epoch, lam0))
