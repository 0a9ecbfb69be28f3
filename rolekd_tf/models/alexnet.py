"""AlexNet-CIFAR as in the role-kd code (docs/METHOD.md §4).

``pad 5 (32→42) → conv1 11×11×64 valid → BN → act → maxpool → conv2 5×5×192 → BN → act → maxpool
→ conv3 3×3×384 → BN → act → conv4 3×3×256 → BN → act → conv5 3×3×256 → BN → act → maxpool
→ flatten (4×4×256) → fc1 4096 → BN → act → fc2 4096 → BN → ReLU → logits (no bias)``.
Max-pools are 2×2 / stride 2 (32→16→8→4). Every conv/dense except conv1 and logits uses
``w_bits``.

Activation quantisers where role-kd's student ``AlexNetCifar`` puts them (its ``activate`` =
DoReFa ``fa(clip(relu(x), 0, 1))`` after each BN + ReLU): after conv1 (``act1``; the full-precision
first conv still feeds a quantised conv2), conv2 … conv5 (``act2`` … ``act5``) and fc1
(``fc1_act``) — six in all — but **not** after fc2: ``fc2_act`` stays a full-precision ReLU, so
the FP logits dense ("fct" in the code) reads full-precision features, as the FP last layer of the
ResNets reads the FP pooled block output.
Taps (docs/KD.md §1; after the activation quantiser): tap_1 after pool2 (8×8×192), tap_2 after conv3
(8×8×384), tap_3 after conv4 (8×8×256), tap_4 after conv5 + pool (4×4×256).
"""
from __future__ import annotations

import keras

from rolekd_tf.models import _blocks as B


def alexnet(*, num_classes, w_bits=32, a_bits=32, input_shape=(32, 32, 3)):
    inputs = keras.Input(shape=tuple(input_shape), name="images")
    x = keras.layers.ZeroPadding2D(5, name="pad")(inputs)
    x = B.conv(x, 64, 11, 1, "conv1", w_bits=32, padding="valid")
    x = B.bn(x, "bn1")
    x = B.act_q(x, a_bits, "act1")
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = B.conv(x, 192, 5, 1, "conv2", w_bits)
    x = B.bn(x, "bn2")
    x = B.act_q(x, a_bits, "act2")
    x = keras.layers.MaxPooling2D(2, name="pool2")(x)
    x = B.tap(x, 1)
    x = B.conv(x, 384, 3, 1, "conv3", w_bits)
    x = B.bn(x, "bn3")
    x = B.act_q(x, a_bits, "act3")
    x = B.tap(x, 2)
    x = B.conv(x, 256, 3, 1, "conv4", w_bits)
    x = B.bn(x, "bn4")
    x = B.act_q(x, a_bits, "act4")
    x = B.tap(x, 3)
    x = B.conv(x, 256, 3, 1, "conv5", w_bits)
    x = B.bn(x, "bn5")
    x = B.act_q(x, a_bits, "act5")
    x = keras.layers.MaxPooling2D(2, name="pool5")(x)
    x = B.tap(x, 4)
    x = keras.layers.Flatten(name="flatten")(x)
    x = B.dense(x, 4096, "fc1", w_bits, use_bias=False)
    x = B.bn(x, "fc1_bn")
    x = B.act_q(x, a_bits, "fc1_act")
    x = B.dense(x, 4096, "fc2", w_bits, use_bias=False)
    x = B.bn(x, "fc2_bn")
    x = B.relu(x, "fc2_act")  # FP into the FP logits dense, as role-kd (no quantiser before fct)
    logits = B.dense(x, num_classes, "logits", w_bits=32, use_bias=False)
    return keras.Model(inputs, logits, name="alexnet")
