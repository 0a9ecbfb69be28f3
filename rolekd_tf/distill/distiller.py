"""The :class:`Distiller`: a ``keras.Model`` that trains a student from a frozen teacher.

Why not ``keras.distillation.Distiller``: II-KD needs several intermediate feature maps of both
networks at once (taps + logits from ONE forward each) and, in the released code's update rule, a
KD gradient that is clipped *per variable* against the task gradient — which needs two separate
gradients from one tape. Both are outside what a loss-function-level distiller can express, so
``train_step``/``test_step`` are overridden here while ``fit``/``evaluate``/callbacks keep working.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from rolekd_tf import distribute as _dist
from rolekd_tf.distill import losses as _losses
from rolekd_tf.errors import ConfigError, ModelError
from rolekd_tf.models.taps import feature_model, tap_layer_names

UPDATES = ("clip_to_task_grad", "weighted_sum", "weighted_clip")
#: the update rules that clip the KD gradient per variable against the task gradient
CLIPPED_UPDATES = ("clip_to_task_grad", "weighted_clip")
#: KD losses coupling the examples of a batch (pairs, graphs, batch sums): under a multi-device
#: strategy they see the all-gathered global batch (rolekd_tf.distribute).
BATCH_RELATIONAL = ("ii", "mhgd", "svd", "rkd")
KD_NAMES = tuple(sorted(_losses.LOSSES)) + ("none",)


def kernel_variables(model) -> list:
    """Kernels (conv/dense weights) that get weight decay: ``rolekd_tf.models.kernel_variables``
    when it exists, else trainable variables whose path contains ``kernel``."""
    try:
        from rolekd_tf.models import kernel_variables as kv  # type: ignore

        return list(kv(model))
    except ImportError:
        return [v for v in model.trainable_variables if "kernel" in v.path]


def clip_to_bound(g, tau):
    """``clip_by_norm(g, tau)`` that never divides by zero: ``g·min(1, tau/‖g‖)``; ``tau=0`` → 0,
    ``g=0`` → 0 (no NaN)."""
    n = tf.sqrt(tf.reduce_sum(tf.square(g)))
    scale = tf.where(n > tau, tau / tf.maximum(n, 1e-30), tf.ones_like(n))
    return g * scale


def clipped_kd_update(g_ce, g_kd, w, *, factor, weight_decay=0.0, decay=False):
    """Released-code rule for one variable: ``g_ce + wd·w (kernels) + clip_by_norm(g_kd, τ)``,
    ``τ = ‖g_ce‖₂·factor`` (``factor = sigmoid(epoch − e0)``)."""
    tau = tf.sqrt(tf.reduce_sum(tf.square(g_ce))) * factor
    g = g_ce + clip_to_bound(g_kd, tau)
    if decay and weight_decay:
        g = g + weight_decay * w
    return g


def _gradients(tape, target, variables):
    """``tape.gradient`` with unconnected/sparse gradients turned into dense tensors (zeros).
    (``UnconnectedGradients.ZERO`` fails on Keras 3 variables, whose ``dtype`` is a string.)"""
    grads = tape.gradient(target, variables)
    return [tf.zeros(v.shape, tf.float32) if g is None else tf.convert_to_tensor(g)
            for g, v in zip(grads, variables)]


class Distiller(keras.Model):
    """Student training with a frozen teacher and a KD loss from :data:`~rolekd_tf.distill.LOSSES`.

    Args:
      teacher: trained model with taps (``tap_1..`` + ``logits``); frozen, run with
        ``training=False``. May be ``None`` for ``kd="none"`` or ``"dml"``.
      student: model to train (same tap contract). Its ``call`` is :meth:`call`.
      kd: ``"ii"`` (MHGD+RKD+KD-SVD), ``"mhgd"``, ``"svd"``, ``"rkd"``, ``"soft"``, ``"dml"``, ``"none"``.
      update: how feature/relation KD (ii, mhgd, svd, rkd) enters the gradient:
        ``"clip_to_task_grad"`` (released code; default): per student variable
        ``g = ∂CE/∂w + wd·w + clip_by_norm(∂L_KD/∂w, ‖∂CE/∂w‖₂·sigmoid(epoch − clip_e0))``, λ logged only;
        ``"weighted_sum"`` (paper Eq. 10 without clipping): ``∇(CE + λ·L_KD) + wd·w``;
        ``"weighted_clip"`` (paper §5.2: Eq. 10 *with* KD-SVD's clipping):
        ``g = ∂CE/∂w + wd·w + clip_by_norm(λ·∂L_KD/∂w, ‖∂CE/∂w‖₂·sigmoid(epoch − clip_e0))``.
        λ is applied *before* the clip: the clip acts on the gradient of the loss term λ·L_KD as
        it stands in Eq. 10 (KD-SVD clips the gradient of the distillation term of its total
        loss), so λ (and its decay) matters while ‖λ·∇L_KD‖ < τ and the bound τ caps it otherwise.
        ``soft`` always uses ``(1−soft_alpha)·CE + soft_alpha·KD`` and ``dml`` ``CE + KD`` (released
        baselines); ``none`` is plain ``CE + wd``.
      weight_decay: coupled L2 on the student's kernels, added to the gradient as ``wd·w``.
      temperature: soft-label temperature (code 3). soft_alpha: soft-label mixing weight (code 0.3).
      mhgd_heads: MHGD heads (code 4, original 8). lambda_init: λ0 (updated by ``LambdaSchedule``).
      clip_e0: e0 in the clip bound's sigmoid. adapter: trainable 1×1 Dense on each student tap
        whose channel count differs from the teacher's (paper §5.6 FP pairs; our design, not in the
        released code). Adapters get the *unclipped* KD gradient (they have no task gradient).
      seed: seeds MHGD heads / adapters. rkd_variant: ``"iikd"`` or ``"standard"`` (RepDistiller).
      soft_t2: multiply the soft loss by T².

    DML: a PEER with the student's architecture (``keras.models.clone_model``, fresh random init) is
    trained alongside with ``CE_peer + DML(peer ← student)``; the student learns from the peer.

    Metrics (``fit`` logs / TensorBoard): ``loss``, ``ce``, each KD term (``mhgd``, ``rkd``, ``svd``,
    ``soft``, ``dml``), ``kd`` (sum of terms), ``lambda``, ``accuracy`` (+ ``peer_ce`` for dml).
    ``loss`` is ``CE + w·KD + ½wd·Σ‖kernel‖²`` with ``w = λ`` (weighted_sum, weighted_clip), 1
    (clip_to_task_grad), or the
    soft/dml mixing. ``test_step``: student only → ``loss`` (= CE), ``ce``, ``accuracy``.

    Several devices (``tf.distribute.MirroredStrategy``): gradients are all-reduced before the update
    rule, so the clip uses global norms; batch-relational KD losses see the global batch
    (:mod:`rolekd_tf.distribute` documents the semantics).

    Checkpoint/resume: :mod:`rolekd_tf.distill.checkpoint` (student weights incl. BN statistics,
    adapters, peer, MHGD heads, optimizer state, epoch and λ; teacher not stored).
    Export the student alone with ``distiller.student.save("model.keras")``.
    """

    def __init__(self, teacher, student, *, kd="ii", update="clip_to_task_grad", weight_decay=0.0,
                 temperature=3.0, soft_alpha=0.3, mhgd_heads=4, lambda_init=0.4, clip_e0=0.0,
                 adapter=False, seed=0, rkd_variant="iikd", soft_t2=False, **kwargs):
        super().__init__(**kwargs)
        if kd not in KD_NAMES:
            _losses.get_loss(kd)  # raises ConfigError with the registered names
        if update not in UPDATES:
            raise ConfigError(f"unknown kd update {update!r}; allowed: {', '.join(UPDATES)}")
        self.kd, self.update = kd, update
        self.weight_decay = float(weight_decay)
        self.soft_alpha = float(soft_alpha)
        self.lambda_init = float(lambda_init)
        self.clip_e0 = float(clip_e0)
        self.student = student
        self.needs_teacher = kd not in ("none", "dml")
        loss_cls = None if kd == "none" else _losses.get_loss(kd)
        uses_taps = kd in ("ii", "mhgd", "svd") or (kd == "rkd" and rkd_variant == "standard")
        if self.needs_teacher and teacher is None:
            raise ModelError(f"--kd {kd} needs a teacher model")
        self.teacher = teacher
        if teacher is not None:
            teacher.trainable = False

        # one forward per network per step: feature views share the layers and weights
        self._student_fm = feature_model(student) if uses_taps else None
        self._teacher_fm = feature_model(teacher) if (uses_taps and self.needs_teacher) else None
        self._adapter_index, self.adapters = [], []
        channels = None
        if uses_taps and kd != "rkd":
            channels = self._check_taps(adapter, seed)

        self.peer = None
        if kd == "dml":
            self.peer = keras.models.clone_model(student)

        self.mhgd = None
        if kd == "ii":
            self.kd_loss = loss_cls(channels, heads=mhgd_heads, seed=seed, rkd_variant=rkd_variant)
            self.mhgd = self.kd_loss.mhgd
        elif kd == "mhgd":
            self.kd_loss = loss_cls(channels, heads=mhgd_heads, seed=seed, name="mhgd")
            self.mhgd = self.kd_loss
        elif kd == "soft":
            self.kd_loss = loss_cls(temperature=temperature, t2_scale=soft_t2)
        elif kd == "rkd":
            self.kd_loss = loss_cls(variant=rkd_variant)
        elif loss_cls is not None:
            self.kd_loss = loss_cls()
        else:
            self.kd_loss = None
        self.kd_terms = tuple(self.kd_loss.terms) if self.kd_loss is not None else ()

        self.epoch = self.add_weight(name="epoch", shape=(), initializer="zeros", trainable=False)
        self.kd_lambda = self.add_weight(
            name="kd_lambda", shape=(), initializer=keras.initializers.Constant(self.lambda_init),
            trainable=False)

        names = ["loss", "ce"] + list(self.kd_terms) + (["kd", "lambda"] if self.kd_terms else [])
        if kd == "dml":
            names.append("peer_ce")
        self._means = {n: keras.metrics.Mean(name=n) for n in names}
        self._acc = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self._kernels = kernel_variables(student)
        self._kernel_ids = {id(v) for v in self._kernels}
        self.built = True

    # ------------------------------------------------------------------ construction helpers
    def _check_taps(self, adapter, seed):
        s_names = tap_layer_names(self.student)
        t_names = tap_layer_names(self.teacher)
        if len(s_names) != len(t_names):
            raise ModelError(
                f"student has {len(s_names)} KD taps but the teacher has {len(t_names)}; --kd {self.kd} "
                "needs one tap per stage on both; use --kd rkd or --kd soft")
        channels = []
        for i, (sn, tn) in enumerate(zip(s_names, t_names)):
            cs = self.student.get_layer(sn).output.shape[-1]
            ct = self.teacher.get_layer(tn).output.shape[-1]
            channels.append(int(ct))
            if cs != ct:
                if not adapter:
                    raise ModelError(
                        f"tap {sn!r} has {cs} channels in the student but {ct} in the teacher; --kd {self.kd} "
                        "needs equal channels: use --kd rkd or --kd soft, or set adapter: true")
                layer = keras.layers.Dense(
                    int(ct), use_bias=False, name=f"adapter_{sn}",
                    kernel_initializer=keras.initializers.GlorotUniform(seed=int(seed) * 100 + i))
                layer.build((None, int(cs)))
                self._adapter_index.append(i)
                self.adapters.append(layer)
        return channels

    def _train_var_list(self):
        """Everything the optimizer updates, in a fixed order: student, adapters, peer."""
        peer = list(self.peer.trainable_variables) if self.peer is not None else []
        return list(self.student.trainable_variables) + self._extra_trainables() + peer

    def compile(self, *args, **kwargs):
        """``keras.Model.compile``; also builds the optimizer over :meth:`_train_var_list` so its slot
        order is deterministic (needed by :func:`rolekd_tf.distill.checkpoint.load_state`)."""
        super().compile(*args, **kwargs)
        if self.optimizer is not None and not self.optimizer.built:
            self.optimizer.build(self._train_var_list())

    @property
    def metrics(self):
        return list(self._means.values()) + [self._acc]

    def call(self, x, training=False):
        """Student logits."""
        return self.student(x, training=training)

    # ------------------------------------------------------------------ forwards
    def _student_outs(self, x, training):
        if self._student_fm is not None:
            outs = list(self._student_fm(x, training=training))
            for i, layer in zip(self._adapter_index, self.adapters):
                outs[i] = layer(outs[i])
            return outs
        return [self.student(x, training=training)]

    def _teacher_outs(self, x):
        if self._teacher_fm is not None:
            return [tf.stop_gradient(t) for t in self._teacher_fm(x, training=False)]
        return [tf.stop_gradient(self.teacher(x, training=False))]

    def _extra_trainables(self):
        return [v for a in self.adapters for v in a.trainable_variables]

    # ------------------------------------------------------------------ steps
    def train_step(self, data):
        x, y = data[0], data[1]
        y = tf.cast(tf.reshape(y, [-1]), tf.int32)
        s_vars = list(self.student.trainable_variables)
        extra = self._extra_trainables()
        clip = self.update in CLIPPED_UPDATES and self.kd in ("ii", "mhgd", "svd", "rkd")
        # weighted_clip: the clipped gradient is that of λ·L_KD (Eq. 10's term); released rule: of L_KD
        kd_scale = self.kd_lambda if self.update == "weighted_clip" else None
        t_outs = self._teacher_outs(x) if self.needs_teacher else None
        with tf.GradientTape(persistent=clip or self.kd == "dml") as tape:
            s_outs = self._student_outs(x, training=True)
            logits = tf.cast(s_outs[-1], tf.float32)
            ce = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
            terms = {}
            if self.kd == "dml":
                p_logits = tf.cast(self.peer(x, training=True), tf.float32)
                peer_ce = tf.reduce_mean(
                    keras.losses.sparse_categorical_crossentropy(y, p_logits, from_logits=True))
                terms = self.kd_loss([logits], [p_logits])
                peer_obj = peer_ce + _losses.dml_loss(p_logits, logits)
            elif self.kd_loss is not None:
                if self.kd in BATCH_RELATIONAL:  # global batch under a strategy; identity otherwise
                    terms = self.kd_loss(_dist.gather_batch(s_outs), _dist.gather_batch(t_outs))
                else:
                    terms = self.kd_loss(s_outs, t_outs)
            kd = terms.get("kd", tf.constant(0.0))
            if self.kd == "soft":
                obj = (1.0 - self.soft_alpha) * ce + self.soft_alpha * kd
            elif self.kd in ("dml", "none"):
                obj = ce + kd
            elif clip and kd_scale is None:
                obj = ce + kd  # logged only; the update is built from separate gradients below
            else:
                obj = ce + self.kd_lambda * kd

        if clip:
            # global (all-reduced) gradients first: the clip bound is ‖∇CE‖ of the global batch
            g_ce = _dist.mean_over_replicas(_gradients(tape, ce, s_vars))
            g_kd = _dist.mean_over_replicas(_gradients(tape, kd, s_vars + extra))
            if kd_scale is not None:
                g_kd = [kd_scale * g for g in g_kd]  # λ before the clip (adapters: λ·∇L_KD)
            factor = tf.sigmoid(self.epoch - self.clip_e0)
            grads = [
                clipped_kd_update(gc, gk, w, factor=factor,
                                  weight_decay=self.weight_decay, decay=id(w) in self._kernel_ids)
                for gc, gk, w in zip(g_ce, g_kd[: len(s_vars)], s_vars)
            ] + list(g_kd[len(s_vars):])
        else:
            grads = _dist.mean_over_replicas(_gradients(tape, obj, s_vars + extra))
            if self.weight_decay:
                grads = [g + self.weight_decay * w if id(w) in self._kernel_ids else g
                         for g, w in zip(grads, s_vars + extra)]
        train_vars = s_vars + extra
        if self.kd == "dml":
            p_vars = list(self.peer.trainable_variables)
            pg = _dist.mean_over_replicas(_gradients(tape, peer_obj, p_vars))
            if self.weight_decay:
                pk = {id(v) for v in kernel_variables(self.peer)}
                pg = [g + self.weight_decay * w if id(w) in pk else g for g, w in zip(pg, p_vars)]
            grads, train_vars = list(grads) + list(pg), train_vars + p_vars
        del tape
        self.optimizer.apply(_dist.for_optimizer(grads, self.optimizer), train_vars)

        l2 = tf.constant(0.0)
        if self.weight_decay:
            l2 = 0.5 * self.weight_decay * tf.add_n([tf.reduce_sum(tf.square(k)) for k in self._kernels])
        values = {"loss": obj + l2, "ce": ce}
        for n in self.kd_terms:
            values[n] = terms[n]
        if self.kd_terms:
            values["kd"] = kd
            values["lambda"] = self.kd_lambda
        if self.kd == "dml":
            values["peer_ce"] = peer_ce
        for n, v in values.items():
            self._means[n].update_state(v)
        self._acc.update_state(y, logits)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        x, y = data[0], data[1]
        y = tf.cast(tf.reshape(y, [-1]), tf.int32)
        logits = tf.cast(self.student(x, training=False), tf.float32)
        ce = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
        self._means["loss"].update_state(ce)
        self._means["ce"].update_state(ce)
        self._acc.update_state(y, logits)
        return {"loss": self._means["loss"].result(), "ce": self._means["ce"].result(),
                "accuracy": self._acc.result()}

    # ------------------------------------------------------------------ MHGD pretraining
    def pretrain_mhgd_heads(self, dataset, epochs, *, steps_per_epoch=None, learning_rate=1e-3):
        """Original-MHGD head pre-training on the teacher (``mhgd_pretrain_epochs``); no-op without
        MHGD or for ``epochs=0`` (released code)."""
        if self.mhgd is None or epochs <= 0:
            return []
        fm = self._teacher_fm
        return self.mhgd.pretrain_heads(lambda x: list(fm(x, training=False))[:-1], dataset, epochs,
                                        steps_per_epoch=steps_per_epoch, learning_rate=learning_rate)
