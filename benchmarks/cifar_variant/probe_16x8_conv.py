"""Latency of one 3→16 conv on 32×32 in TFLite 16x8 mode (int16 activations, int8 weights), made
by the standard converter, in the interpreter with num_threads=1: what a 16x8 stem would cost.

    python benchmarks/cifar_variant/probe_16x8_conv.py
"""
import time

import keras
import numpy as np
import tensorflow as tf

x = keras.Input((32, 32, 3))
m = keras.Model(x, keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x))
conv = tf.lite.TFLiteConverter.from_keras_model(m)
conv.optimizations = [tf.lite.Optimize.DEFAULT]
conv.representative_dataset = lambda: ([np.random.rand(1, 32, 32, 3).astype(np.float32)] for _ in range(20))
conv.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
conv.inference_input_type = conv.inference_output_type = tf.int16
it = tf.lite.Interpreter(model_content=conv.convert(), num_threads=1)
it.allocate_tensors()
print("ops:", [o["op_name"] for o in it._get_ops_details()],
      "dtypes:", sorted({t["dtype"].__name__ for t in it.get_tensor_details()}))
d = it.get_input_details()[0]
it.set_tensor(d["index"], np.zeros(d["shape"], np.int16))
for _ in range(5):
    it.invoke()
ts = []
for _ in range(50):
    t0 = time.perf_counter()
    it.invoke()
    ts.append(time.perf_counter() - t0)
print(f"16x8 3->16 conv: median {np.median(ts) * 1e3:.3f} ms of 50 invokes")
