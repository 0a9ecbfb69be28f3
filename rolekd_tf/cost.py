"""GPU-hour estimates for the pipeline's plan (``python -m rolekd_tf.pipeline --dry-run``).

Formula (documented in docs/PROTOCOL.md)::

    GPU-hours = (N_train · epochs · u_train + N_eval · u_eval) / R / 3600

* ``R`` = :data:`REF_TRAIN_IMAGES_PER_S`: training images per second of the reference network
  (CIFAR ResNet-18, batch 128, FP32) on one NVIDIA V100. **An assumption, not a measurement of this
  project**: ≈ 25 s per 50,000-image epoch, the usual order for an FP32 CIFAR ResNet-18 on a V100
  (≈ 6.7 TFLOP/s effective, ~40 % of the V100's 15.7 TFLOP/s FP32 peak). Replace it with your own
  measurement; every estimate scales with 1/R.
* ``u`` = cost of one image in units of "one ResNet-18 training image". With ``F(m)`` the forward
  FLOPs of network ``m`` (2 × the multiply-accumulates of every convolution and dense layer of the
  built Keras model, :func:`forward_flops`) and ``c(m) = F(m) / F(resnet18)``: a training image
  costs ``c`` (forward + backward ≈ 3 forwards, as for ResNet-18 itself); a KD student adds the
  frozen teacher's forward ``c_T / 3``; the per-variable KD clipping (``clip_to_task_grad`` and
  the paper's ``weighted_clip``, for II-KD/MHGD/KD-SVD/RKD) needs a second backward pass of the
  student, ``+ 2 c / 3``; DML trains a peer of the student's size, ``+ c``. An evaluated image costs
  ``c / 3`` (forward only).
* ``N_eval``: a final training evaluates the validation split after every epoch and the holdout
  and test splits once; a PBT search evaluates every member's validation split at every ready
  point (``population · epochs / ready_interval`` evaluations).

Not modelled (so the figures are lower bounds): DoReFa's element-wise quantisers, the KD losses'
small batched decompositions (latency-bound, docs/KD.md §8), BatchNorm/activations (< 2 % of FLOPs),
input pipelines, process start-up, checkpoints, and GPU under-utilisation by small networks (PBA
instead runs several trials per GPU).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

#: Reference network of the throughput assumption.
REF_MODEL = "resnet18"
#: Assumed training throughput (images/s) of REF_MODEL on one V100, FP32, batch 128 — see above.
REF_TRAIN_IMAGES_PER_S = 2000.0
#: Update rules that take a second, separate backward pass for the KD gradient (per-variable clip).
CLIPPING_UPDATES = ("clip_to_task_grad", "weighted_clip")
CLIPPED_LOSSES = ("ii", "mhgd", "svd", "rkd")


def forward_flops(model) -> int:
    """Forward FLOPs per image of a built Keras model: 2 × MACs of its Conv2D and Dense layers
    (nested models included). Element-wise layers (BN, activations, adds, pooling) are ignored."""
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += forward_flops(layer)
        elif isinstance(layer, keras.layers.Conv2D):
            kh, kw, cin, cout = (int(d) for d in layer.kernel.shape)
            _, h, w, _ = layer.output.shape
            total += 2 * int(h) * int(w) * kh * kw * cin * cout // max(1, int(getattr(layer, "groups", 1)))
        elif isinstance(layer, keras.layers.Dense):
            total += 2 * int(layer.kernel.shape[0]) * int(layer.kernel.shape[1])
    return total


@functools.lru_cache(maxsize=None)
def model_flops(name: str, num_classes: int = 10, input_shape: tuple = (32, 32, 3)) -> int:
    """:func:`forward_flops` of registry model ``name`` (built once per process, full precision:
    DoReFa does not change the multiply-accumulate count)."""
    import keras

    from rolekd_tf.models import build_model

    model = build_model(name, num_classes=num_classes, input_shape=input_shape)
    flops = forward_flops(model)
    del model
    keras.backend.clear_session()
    return flops


def relative_cost(name: str, num_classes: int = 10, input_shape: tuple = (32, 32, 3)) -> float:
    """``c(m) = F(m) / F(resnet18)`` at the same input shape and class count."""
    return model_flops(name, num_classes, input_shape) / model_flops(REF_MODEL, num_classes, input_shape)


@dataclass(frozen=True)
class Work:
    """What one pipeline step computes (image counts are per pass over the data)."""

    model: str  #: the trained network
    train_images: int  #: images per epoch
    epochs: int  #: epochs per trained network
    eval_images: int  #: images evaluated over the whole step
    networks: int = 1  #: networks trained side by side (a PBT population)
    teacher: str | None = None  #: frozen teacher run alongside (KD)
    kd: str = "none"
    update: str = "clip_to_task_grad"


def gpu_hours(work: Work, num_classes: int = 10, input_shape: tuple = (32, 32, 3)) -> float:
    """The module formula for one step (see the module docstring); ``R`` = REF_TRAIN_IMAGES_PER_S."""
    c = relative_cost(work.model, num_classes, input_shape)
    u_train = c
    if work.kd not in ("none", "dml") and work.teacher is not None:
        u_train += relative_cost(work.teacher, num_classes, input_shape) / 3
    if work.kd in CLIPPED_LOSSES and work.update in CLIPPING_UPDATES:
        u_train += 2 * c / 3
    if work.kd == "dml":
        u_train += c
    units = work.networks * work.train_images * work.epochs * u_train + work.eval_images * c / 3
    return units / REF_TRAIN_IMAGES_PER_S / 3600.0
