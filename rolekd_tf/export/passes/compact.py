"""Pass 5, compact: file bytes → smaller bytes with the same graph and every value unchanged."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rolekd_tf.export import flatbuf as F
from rolekd_tf.export.records import Record


@dataclass(frozen=True, eq=False, kw_only=True)
class CompactRecord(Record):
    """Bytes each step of :func:`compact_model` removed (measured by re-serialising)."""
    tensor_names: int
    shape_signatures: int
    conversion_metadata_entries: int
    buffers_and_metadata: int
    shared_quantization_vectors: int
    total: int


def compact_model(model_bytes: bytes) -> tuple[bytes, CompactRecord]:
    """Drop what an inference flatbuffer does not need; the graph and every value are unchanged.

    * tensor names, except the subgraph inputs/outputs (the signature keeps its own names);
    * ``shape_signature`` of tensors that are not subgraph inputs/outputs (only the I/O signature
      is used when an input is resized; every other shape is recomputed by the kernels);
    * buffers: every data-less tensor points at the empty buffer 0, identical constant buffers are
      shared, unreferenced buffers are removed;
    * the ``CONVERSION_METADATA`` metadata entry (converter options and version; not read by the
      runtime). ``min_runtime_version`` is kept;
    * repeated quantisation vectors: each distinct one is stored once (:func:`pack_shared_quantization`).
    """
    model, _ = F.read(model_bytes)
    removed = {}
    io = [set(g.inputs) | set(g.outputs) for g in model.subgraphs]
    n_prev = len(F.write(model))
    for attr, key in (("name", "tensor_names"), ("shapeSignature", "shape_signatures")):
        for g, keep in zip(model.subgraphs, io):
            for i, t in enumerate(g.tensors):
                if i not in keep:
                    setattr(t, attr, None)
        n_now = len(F.write(model))
        removed[key] = n_prev - n_now
        n_prev = n_now
    removed["conversion_metadata_entries"] = _share_buffers(model)
    n3 = len(F.write(model))
    removed["buffers_and_metadata"] = n_prev - n3
    out = pack_shared_quantization(model)
    removed["shared_quantization_vectors"] = n3 - len(out)
    removed["total"] = len(model_bytes) - len(out)
    return out, CompactRecord(**removed)


def _share_buffers(model) -> int:
    """Point data-less tensors at buffer 0, store each distinct constant once, drop unreferenced
    buffers and the CONVERSION_METADATA entry; returns the number of metadata entries dropped."""
    bufs, index = [model.buffers[0]], {}
    for g in model.subgraphs:
        for t in g.tensors:
            b = model.buffers[t.buffer]
            if b.data is None or len(b.data) == 0:
                t.buffer = 0
                continue
            key = bytes(np.asarray(b.data, np.uint8))
            if key not in index:
                index[key] = len(bufs)
                bufs.append(b)
            t.buffer = index[key]
    meta = [md for md in (model.metadata or []) if md.name not in (b"CONVERSION_METADATA", "CONVERSION_METADATA")]
    for md in meta:
        bufs.append(model.buffers[md.buffer])
        md.buffer = len(bufs) - 1
    dropped = len(model.metadata or []) - len(meta)
    model.buffers = bufs
    model.metadata = meta or None
    return dropped


def pack_shared_quantization(model) -> bytes:
    """Serialise a flatbuffer model object writing each distinct quantisation vector (scales, zero
    points, min/max) once and pointing every table that uses it at that copy.

    Why: per-channel tensors must carry one int64 zero point per channel (all zeros; a 1-entry
    vector is rejected by the interpreter), so a ResNet-20 repeats ~800 zero points twice (weights
    and biases). A flatbuffer vector may be referenced from many tables (the format is a DAG, as
    with shared strings), so sharing changes no value the interpreter reads.

    How: each tensor's ``QuantizationParametersT`` is replaced by a :func:`_shared_quantization`
    instance (a subclass whose ``Pack`` looks vectors up in one cache per builder) before the
    model is packed; the schema class itself is not touched.
    """
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    cls = _shared_quantization(builder)
    for g in model.subgraphs:
        for t in g.tensors:
            if t.quantization is not None:
                shared = cls()
                shared.__dict__.update(vars(t.quantization))
                t.quantization = shared
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _shared_quantization(builder):
    """A ``QuantizationParametersT`` subclass packing its vectors through one cache on ``builder``."""
    s = F.schema()
    cache = {}

    def vec(values, start, prepend):
        if values is None:
            return None
        key = (start.__name__, tuple(np.asarray(values).tolist()))
        if key not in cache:
            start(builder, len(values))
            for v in reversed(list(values)):
                prepend(v)
            cache[key] = builder.EndVector()
        return cache[key]

    class SharedQuantization(s.QuantizationParametersT):
        def Pack(self, b):  # noqa: N802 (the schema's method name)
            assert b is builder
            mn = vec(self.min, s.QuantizationParametersStartMinVector, b.PrependFloat32)
            mx = vec(self.max, s.QuantizationParametersStartMaxVector, b.PrependFloat32)
            sc = vec(self.scale, s.QuantizationParametersStartScaleVector, b.PrependFloat32)
            zp = vec(self.zeroPoint, s.QuantizationParametersStartZeroPointVector, b.PrependInt64)
            details = self.details.Pack(b) if self.details is not None else None
            s.QuantizationParametersStart(b)
            for off, add in ((mn, s.QuantizationParametersAddMin), (mx, s.QuantizationParametersAddMax),
                             (sc, s.QuantizationParametersAddScale), (zp, s.QuantizationParametersAddZeroPoint)):
                if off is not None:
                    add(b, off)
            s.QuantizationParametersAddDetailsType(b, self.detailsType)
            if details is not None:
                s.QuantizationParametersAddDetails(b, details)
            s.QuantizationParametersAddQuantizedDimension(b, self.quantizedDimension)
            return s.QuantizationParametersEnd(b)

    return SharedQuantization
