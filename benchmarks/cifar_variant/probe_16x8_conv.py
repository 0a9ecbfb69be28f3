"""Latency of one 3->16 32x32 conv in TFLite 16x8 mode (int16 activations, int8 weights), standard
converter, interpreter with num_threads=1: the cost of a 16x8 stem. python benchmarks/cifar_variant/probe_16x8_conv.py"""
import numpy as np, tensorflow as tf, time

import keras
x = keras.Input((32,32,3)); y = keras.layers.Conv2D(16,3,padding="same",activation="relu")(x)

m = keras.Model(x,y)
conv = tf.lite.TFLiteConverter.from_keras_model(m)
conv.optimizations=[tf.lite.Optimize.DEFAULT]
conv.representative_dataset=lambda: ([np.random.rand(1,32,32,3).astype(np.float32)] for _ in range(20))
conv.target_spec.supported_ops=[tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
conv.inference_input_type=tf.int16; conv.inference_output_type=tf.int16
b=conv.convert()
it=tf.lite.Interpreter(model_content=b, num_threads=1); it.allocate_tensors()
print([o["op_name"] for o in it._get_ops_details()])
for t in it.get_tensor_details(): print(t["name"][:40], t["dtype"].__name__, t["quantization"])
d=it.get_input_details()[0]; it.set_tensor(d["index"], np.zeros(d["shape"], np.int16))
for _ in range(5): it.invoke()
ts=[]
for _ in range(50):
    t0=time.perf_counter(); it.invoke(); ts.append(time.perf_counter()-t0)
print("16x8 3->16 conv ms", np.median(ts)*1e3)
