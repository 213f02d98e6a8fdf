"""gguf_ref.py: a small GGUF reader in numpy, written from the format
definition, for the reference tests (independent of src/io/gguf.c and
src/quant/).

For: reading the metadata and tensors of a GGUF file (version 2 or 3,
little-endian) and dequantizing tensors of type F32, F16, BF16, Q8_0, Q4_0,
Q4_1, Q5_0 and Q5_1 to float32. Not for: the K-quant types (the tests use the
C engine's F32 path as their reference), writing files, or validating broken
files (the C reader does that; this one trusts its input).

    g = GGUF(path)
    g.kv["llama.block_count"]          # python int / float / str / bool / list
    g.tensors["blk.0.attn_q.weight"]   # TensorInfo(type, ne (innermost first), offset)
    w = g.get("blk.0.attn_q.weight")   # np.float32 array, shape = reversed(ne)

Layout: "GGUF", u32 version, u64 n_tensors, u64 n_kv; n_kv x {string key,
u32 value type, value}; n_tensors x {string name, u32 n_dims, u64 ne[n_dims],
u32 type, u64 offset}; padding to general.alignment (default 32); data.
A string is u64 length + bytes; an array is u32 element type + u64 count +
elements.
"""
import collections
import struct

import numpy as np

F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 = 0, 1, 2, 3, 6, 7, 8
Q2_K, Q3_K, Q4_K, Q5_K, Q6_K = 10, 11, 12, 13, 14
BF16 = 30
TYPE_NAMES = {F32: "F32", F16: "F16", Q4_0: "Q4_0", Q4_1: "Q4_1", Q5_0: "Q5_0",
              Q5_1: "Q5_1", Q8_0: "Q8_0", Q2_K: "Q2_K", Q3_K: "Q3_K", Q4_K: "Q4_K",
              Q5_K: "Q5_K", Q6_K: "Q6_K", BF16: "BF16"}

# (weights per block, bytes per block) of the types this reader dequantizes
_BLOCK = {F32: (1, 4), F16: (1, 2), BF16: (1, 2), Q8_0: (32, 34), Q4_0: (32, 18),
          Q4_1: (32, 20), Q5_0: (32, 22), Q5_1: (32, 24)}
# sizes of the others, to step over them (K types: 256 weights per block)
_SIZES = {Q2_K: (256, 84), Q3_K: (256, 110), Q4_K: (256, 144), Q5_K: (256, 176),
          Q6_K: (256, 210)}

# metadata value types: 0 u8 1 i8 2 u16 3 i16 4 u32 5 i32 6 f32 7 bool 8 string
# 9 array 10 u64 11 i64 12 f64
_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
           10: "<Q", 11: "<q", 12: "<d"}

TensorInfo = collections.namedtuple("TensorInfo", "type ne offset")


class GGUF:
    def __init__(self, path):
        with open(path, "rb") as f:
            self.buf = f.read()
        self.pos = 0
        if self.buf[:4] != b"GGUF":
            raise ValueError("%s: not a GGUF file" % path)
        self.pos = 4
        self.version = self._u("<I")
        if self.version not in (2, 3):
            raise ValueError("%s: version %d" % (path, self.version))
        n_tensors = self._u("<Q")
        n_kv = self._u("<Q")
        self.kv = {}
        self.kv_types = {}
        for _ in range(n_kv):
            key = self._str()
            vt = self._u("<I")
            self.kv_types[key] = vt
            self.kv[key] = self._value(vt)
        self.tensors = {}
        self.order = []
        for _ in range(n_tensors):
            name = self._str()
            nd = self._u("<I")
            ne = [self._u("<Q") for _ in range(nd)]
            ty = self._u("<I")
            off = self._u("<Q")
            self.tensors[name] = TensorInfo(ty, ne, off)
            self.order.append(name)
        align = int(self.kv.get("general.alignment", 32))
        self.data_start = (self.pos + align - 1) // align * align

    # -------------------------------------------------------- primitives
    def _u(self, fmt):
        v = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return v

    def _str(self):
        n = self._u("<Q")
        s = self.buf[self.pos:self.pos + n]
        self.pos += n
        return s.decode("utf-8", errors="surrogateescape")

    def _value(self, vt):
        if vt in _SCALAR:
            return self._u(_SCALAR[vt])
        if vt == 8:
            return self._str()
        if vt == 9:
            et = self._u("<I")
            n = self._u("<Q")
            if et in _SCALAR and et != 7:
                dt = np.dtype(_SCALAR[et])
                a = np.frombuffer(self.buf, dtype=dt, count=n, offset=self.pos).copy()
                self.pos += n * dt.itemsize
                return a
            return [self._value(et) for _ in range(n)]
        raise ValueError("metadata value type %d" % vt)

    # ------------------------------------------------------------ tensors
    def raw(self, name):
        """The bytes of a tensor and its info."""
        t = self.tensors[name]
        bs, bb = _BLOCK.get(t.type) or _SIZES[t.type]
        n = int(np.prod(t.ne))
        nbytes = n // bs * bb
        start = self.data_start + t.offset
        return self.buf[start:start + nbytes], t

    def get(self, name):
        """The tensor as float32, numpy shape reversed(ne) (row-major)."""
        data, t = self.raw(name)
        if t.type not in _BLOCK:
            raise NotImplementedError("%s: type %s is not dequantized here"
                                      % (name, TYPE_NAMES.get(t.type, t.type)))
        flat = dequantize(data, t.type)
        return flat.reshape(tuple(reversed(t.ne)))


def _f16(b, off, stride, nb):
    """nb little-endian fp16 values at byte offsets off + i*stride, as float32."""
    idx = off + stride * np.arange(nb)
    u = b[idx].astype(np.uint16) | (b[idx + 1].astype(np.uint16) << 8)
    return u.view(np.float16).astype(np.float32)


def dequantize(data, ty):
    """Weights of a whole tensor (or row) of type ty, float32, in file order."""
    b = np.frombuffer(data, dtype=np.uint8)
    if ty == F32:
        return b.view("<f4").astype(np.float32)
    if ty == F16:
        return b.view("<f2").astype(np.float32)
    if ty == BF16:
        u = b.view("<u2").astype(np.uint32) << 16
        return u.view(np.float32)
    bs, bb = _BLOCK[ty]
    nb = b.size // bb
    blk = b.reshape(nb, bb)
    if ty == Q8_0:  # d:f16, qs[32] int8; w = q * d
        d = _f16(b, 0, bb, nb)
        q = blk[:, 2:].view(np.int8).astype(np.float32)
        return (q * d[:, None]).reshape(-1)
    # 4-bit types: element e < 16 is the low nibble of qs[e], e >= 16 the high
    # nibble of qs[e - 16]; the 5-bit types add bit e of the u32 qh as bit 4.
    if ty in (Q4_0, Q5_0):
        d = _f16(b, 0, bb, nb)
        m = None
        qh_off = 2
    else:
        d = _f16(b, 0, bb, nb)
        m = _f16(b, 2, bb, nb)
        qh_off = 4
    five = ty in (Q5_0, Q5_1)
    qs = blk[:, qh_off + (4 if five else 0):]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int32)  # [nb, 32]
    if five:
        qh = blk[:, qh_off:qh_off + 4].copy().view("<u4").reshape(nb).astype(np.uint64)
        bits = (qh[:, None] >> np.arange(32, dtype=np.uint64)[None, :]) & 1
        q = q | (bits.astype(np.int32) << 4)
    if ty == Q4_0:
        w = (q - 8).astype(np.float32) * d[:, None]
    elif ty == Q5_0:
        w = (q - 16).astype(np.float32) * d[:, None]
    else:
        w = q.astype(np.float32) * d[:, None] + m[:, None]
    return w.reshape(-1)
