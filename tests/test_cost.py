"""GPU-hour estimates: FLOPs counted from built Keras models against hand counts, and the formula."""
from __future__ import annotations

import math

import pytest

from rolekd_tf.cost import REF_TRAIN_IMAGES_PER_S, Work, forward_flops, gpu_hours, model_flops


def _resnet18_macs() -> int:
    """CIFAR ResNet-18 (docs/METHOD.md §4) multiply-accumulates, counted by hand from its layers."""
    macs = 32 * 32 * 9 * 3 * 64  # stem
    macs += 4 * 32 * 32 * 9 * 64 * 64  # stage 1: two blocks, no projection
    for cin, cout, hw in ((64, 128, 16), (128, 256, 8), (256, 512, 4)):
        macs += hw * hw * 9 * cin * cout  # first conv, stride 2
        macs += 3 * hw * hw * 9 * cout * cout  # the other three 3×3 convs
        macs += hw * hw * cin * cout  # 1×1 projection
    return macs + 512 * 10  # logits


def test_forward_flops_of_a_small_model_by_hand():
    import keras

    x = keras.Input((8, 8, 3))
    y = keras.layers.Conv2D(5, 3, strides=2, padding="same")(x)  # 4×4×5 outputs, 27 MACs each
    y = keras.layers.Flatten()(y)
    y = keras.layers.Dense(7)(y)  # 80 → 7
    model = keras.Model(x, y)
    assert forward_flops(model) == 2 * (4 * 4 * 5 * 27 + 80 * 7)


def test_resnet18_flops_match_the_hand_count():
    assert model_flops("resnet18", 10) == 2 * _resnet18_macs()  # 1.11 GFLOP


def test_gpu_hours_formula():
    n, e = 50_000, 200
    one = n * e / REF_TRAIN_IMAGES_PER_S / 3600  # one ResNet-18 training at the assumed throughput
    plain = gpu_hours(Work("resnet18", n, e, eval_images=0))
    assert math.isclose(plain, one)
    # evaluation: a forward pass = a third of a training image
    assert math.isclose(gpu_hours(Work("resnet18", n, e, eval_images=3 * n * e)), 2 * one)
    # II-KD with per-variable clipping: + teacher forward (1/3) + a second student backward (2/3)
    kd = gpu_hours(Work("resnet18", n, e, 0, teacher="resnet18", kd="ii", update="clip_to_task_grad"))
    assert math.isclose(kd, 2 * one)
    soft = gpu_hours(Work("resnet18", n, e, 0, teacher="resnet18", kd="soft", update="clip_to_task_grad"))
    assert math.isclose(soft, one * 4 / 3)  # soft labels are never clipped
    dml = gpu_hours(Work("resnet18", n, e, 0, teacher="resnet18", kd="dml"))
    assert math.isclose(dml, 2 * one)  # a peer of the student's size, no teacher forward
    pop = gpu_hours(Work("resnet18", 4000, e, 0, networks=16))
    assert math.isclose(pop, 16 * 4000 * e / REF_TRAIN_IMAGES_PER_S / 3600)


@pytest.mark.parametrize("name", ["resnet20", "wrn-16-2"])
def test_relative_cost_follows_flops(name):
    from rolekd_tf.cost import relative_cost

    assert math.isclose(relative_cost(name), model_flops(name) / (2 * _resnet18_macs()))
