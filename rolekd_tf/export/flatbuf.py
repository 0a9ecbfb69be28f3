"""TFLite flatbuffers as objects: read, edit, write (LiteRT's schema and ``flatbuffer_utils``).

The export passes edit a file through the flatbuffer *object* API (``ModelT`` and friends):
:func:`read` unpacks bytes, the pass changes tensors/buffers/operators, :func:`write` packs them.
The schema comes from ``ai_edge_litert`` (a dependency of the package); TensorFlow's copy is used
only where LiteRT is missing.
"""
from __future__ import annotations

import numpy as np

#: TFLite schema TensorType enum → name (tensorflow/lite/schema/schema.fbs).
TENSOR_TYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string",
                6: "bool", 7: "int16", 8: "complex64", 9: "int8", 10: "float64",
                11: "complex128", 12: "uint64", 13: "resource", 14: "variant", 15: "uint32",
                16: "uint16", 17: "int4", 18: "bfloat16"}
FLOAT32, INT32, INT64, INT16, INT8, INT4 = 0, 2, 4, 7, 9, 17
#: DEPTHWISE_CONV_2D version with int8 inputs (lite/tools/versioning)
DEPTHWISE_INT8_VERSION = 3


def schema():
    """The generated TFLite schema module (object API: ``ModelT``, ``TensorT``, ...)."""
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError:
        from tensorflow.lite.python import schema_py_generated
    return schema_py_generated


def _utils():
    try:
        from ai_edge_litert.tools import flatbuffer_utils
    except ImportError:
        from tensorflow.lite.tools import flatbuffer_utils
    return flatbuffer_utils


def read(model_bytes: bytes):
    """``(model object, opname)`` of a TFLite flatbuffer; ``opname(op)`` is the builtin's name."""
    model = _utils().convert_bytearray_to_object(bytearray(model_bytes))
    names = {v: k for k, v in vars(schema().BuiltinOperator).items() if not k.startswith("_")}

    def opname(op):
        c = model.operatorCodes[op.opcodeIndex]
        return names.get(max(c.builtinCode, c.deprecatedBuiltinCode), "?")

    return model, opname


def write(model) -> bytes:
    """The bytes of a flatbuffer model object."""
    return bytes(_utils().convert_object_to_bytearray(model))


def name_of(tensor, default: str = "t") -> str:
    return tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name or default)


def opcode(model, builtin: int, version: int) -> int:
    """Index of ``builtin``'s operator code in ``model`` (added with ``version`` if missing; an
    existing entry keeps the larger version)."""
    for i, c in enumerate(model.operatorCodes):
        if max(c.builtinCode, c.deprecatedBuiltinCode) == builtin:
            c.version = max(int(c.version), version)
            return i
    oc = schema().OperatorCodeT()
    oc.builtinCode = builtin
    oc.deprecatedBuiltinCode = min(builtin, 127)
    oc.version = version
    model.operatorCodes.append(oc)
    return len(model.operatorCodes) - 1


def new_tensor(g, like, dtype: int, name: str, scale: float, zero_point: int) -> int:
    """Append an activation tensor ``name`` shaped like ``like`` (per-tensor ``scale`` /
    ``zero_point``, no data) to subgraph ``g``; returns its index."""
    s = schema()
    t = s.TensorT()
    t.shape = np.asarray(like.shape, np.int32).copy()
    t.type, t.buffer = dtype, 0
    t.name = name
    t.quantization = s.QuantizationParametersT()
    t.quantization.scale, t.quantization.zeroPoint = [scale], [zero_point]
    g.tensors.append(t)
    return len(g.tensors) - 1


def new_const(model, g, shape, dtype: int, values: np.ndarray, scale: float) -> int:
    """Append a constant tensor (per-tensor ``scale``, zero point 0) holding ``values`` to
    subgraph ``g``, with its own buffer; returns its index."""
    s = schema()
    buf = s.BufferT()
    buf.data = np.frombuffer(values.tobytes(), np.uint8).copy()
    model.buffers.append(buf)
    t = s.TensorT()
    t.shape, t.type, t.buffer = np.asarray(shape, np.int32), dtype, len(model.buffers) - 1
    t.quantization = s.QuantizationParametersT()
    t.quantization.scale, t.quantization.zeroPoint = [float(scale)], [0]
    g.tensors.append(t)
    return len(g.tensors) - 1


def new_operator(model, builtin: int, version: int, inputs, outputs):
    op = schema().OperatorT()
    op.opcodeIndex = opcode(model, builtin, version)
    op.inputs, op.outputs = np.asarray(inputs, np.int32), np.asarray(outputs, np.int32)
    return op


def store_int8(model, tensor, q: np.ndarray, scale: np.ndarray) -> None:
    """Write integer filter ``q`` (|q| ≤ 127, TFLite layout) into ``tensor``'s buffer with the
    per-channel ``scale`` (stored float32) and zero points 0."""
    model.buffers[tensor.buffer].data = np.ascontiguousarray(np.asarray(q).astype(np.int8)).view(np.uint8).reshape(-1)
    tensor.quantization.scale = np.asarray(scale).astype(np.float32).tolist()
    tensor.quantization.zeroPoint = [0] * len(scale)


def int8_values(model, tensor) -> np.ndarray:
    """The int8 data of ``tensor`` as int64, in its shape."""
    return np.frombuffer(bytes(model.buffers[tensor.buffer].data), np.int8).reshape(tensor.shape).astype(np.int64)


def to_tflite_layout(kernel: np.ndarray) -> np.ndarray:
    """A Keras kernel in TFLite's filter layout: conv HWIO → OHWI, dense (in, out) → (out, in)."""
    if kernel.ndim == 4:
        return np.transpose(kernel, (3, 0, 1, 2))
    return kernel.T


def grid_levels(t) -> int | None:
    """n if tensor ``t`` is int8 with scale 1/n (n = 2^k − 1, k ≥ 2) and zero point −128: a k-bit
    quantiser output as the export view's ``ActQ`` writes it."""
    q = t.quantization
    if t.type != INT8 or q is None or q.scale is None or len(q.scale) != 1 or q.zeroPoint is None:
        return None
    s, zp = float(q.scale[0]), int(q.zeroPoint[0])
    n = int(round(1.0 / s)) if s > 0 else 0
    if zp != -128 or n < 3 or (n + 1) & n or abs(s * n - 1.0) > 1e-6:
        return None
    return n


def producers(g, tensor_index: int) -> list:
    return [o for o in g.operators if tensor_index in [int(i) for i in o.outputs]]


def readers(g, tensor_index: int) -> list:
    return [o for o in g.operators if tensor_index in [int(i) for i in o.inputs]]


def tensor_types(model_bytes: bytes) -> dict[str, dict]:
    """Name → {type, buffer_bytes, shape, index, subgraph} read from the flatbuffer itself."""
    s = schema()
    m = s.Model.GetRootAsModel(model_bytes, 0)
    out = {}
    for si in range(m.SubgraphsLength()):
        g = m.Subgraphs(si)
        for ti in range(g.TensorsLength()):
            t = g.Tensors(ti)
            buf = m.Buffers(t.Buffer())
            nbytes = buf.DataLength() if buf is not None else 0
            if nbytes == 0 and buf is not None and buf.Size():
                nbytes = int(buf.Size())
            name = t.Name().decode() if t.Name() else f"t{ti}"
            out[name] = {"type": TENSOR_TYPES.get(t.Type(), str(t.Type())), "buffer_bytes": int(nbytes),
                         "shape": [int(t.Shape(j)) for j in range(t.ShapeLength())], "index": ti, "subgraph": si}
    return out
