"""A small GGUF reader and writer in pure Python + numpy, for pi's scripts (the predictor trainer).

Only what the scripts need: read every key and tensor of a GGUF v2/v3 file (magic "GGUF" or "PWRI"),
and write a version 3 file laid out exactly as pi's C writer does (gguf/gguf_write.c, docs/formats.md
"GGUF"): keys in order, tensor infos in order, zero padding up to the alignment, each tensor at an
offset that is a multiple of the alignment, no padding after the last tensor. Reading a file and
writing it back unchanged gives the same bytes. Little-endian only.

    f = gguf_py.read("m.pi-sparse.gguf")
    f.get("pi.sparse.n_ff")                  # 256
    t = f.tensor("blk.0.ffn_freq"); t.array()  # numpy float32 [256]
    f.set("pi.sparse.threshold", gguf_py.F32, 0.5)
    f.add_tensor("blk.0.fc1.weight", w)      # w: numpy float16/float32 of shape (rows, cols)
    gguf_py.write("out.gguf", f)             # atomic: a temp file renamed over the path
"""
import os
import struct
import tempfile

import numpy as np

# value types
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
_SCALAR = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<B",
           U64: "<Q", I64: "<q", F64: "<d"}
_NP = {U8: "<u1", I8: "<i1", U16: "<u2", I16: "<i2", U32: "<u4", I32: "<i4", F32: "<f4", BOOL: "<u1",
       U64: "<u8", I64: "<i8", F64: "<f8"}

# tensor types: id -> (name, elements per block, bytes per block); the ones pi supports
TYPE_F32, TYPE_F16, TYPE_Q4_0, TYPE_Q8_0, TYPE_BF16 = 0, 1, 2, 8, 30
TENSOR_TYPES = {TYPE_F32: ("f32", 1, 4), TYPE_F16: ("f16", 1, 2), TYPE_Q4_0: ("q4_0", 32, 18),
                TYPE_Q8_0: ("q8_0", 32, 34), TYPE_BF16: ("bf16", 1, 2)}

DEFAULT_ALIGNMENT = 32


class GGUFError(Exception):
    """A file that is not a GGUF this module can read or write; the message names the file and the part."""


class Value:
    """One key's value: vtype (U8..F64), value (int, float, bool, bytes for a string, a numpy array for a
    numeric array, a list of bytes for a string array) and elem_type for arrays."""

    def __init__(self, vtype, value, elem_type=None):
        self.vtype, self.value, self.elem_type = vtype, value, elem_type

    def __repr__(self):
        return "Value(%d, %r, %r)" % (self.vtype, self.value, self.elem_type)


class Tensor:
    """ne: GGUF dimensions (ne[0] contiguous); ttype: tensor type id; data: the raw bytes (numpy uint8)."""

    def __init__(self, name, ne, ttype, data):
        self.name, self.ne, self.ttype, self.data = name, tuple(int(n) for n in ne), int(ttype), data

    def nbytes(self):
        return tensor_nbytes(self.ne, self.ttype, self.name)

    def array(self):
        """The values as float32 (f32/f16/bf16), shaped (ne[n-1], ..., ne[0]): a weight of rows x cols
        comes back as (rows, cols)."""
        shape = tuple(reversed(self.ne))
        raw = np.asarray(self.data)
        if self.ttype == TYPE_F32:
            return raw.view("<f4").reshape(shape)
        if self.ttype == TYPE_F16:
            return raw.view("<f2").astype(np.float32).reshape(shape)
        if self.ttype == TYPE_BF16:
            return (raw.view("<u2").astype(np.uint32) << 16).view("<f4").reshape(shape)
        raise GGUFError("tensor %s has type %s; gguf_py only converts f32, f16 and bf16 to numpy"
                        % (self.name, type_name(self.ttype)))


class GGUFFile:
    """Keys (an ordered dict name -> Value) and tensors (an ordered list) of one file."""

    def __init__(self, magic=b"GGUF", path=None):
        self.magic, self.path, self.version = magic, path, 3
        self.kv = {}
        self.tensors = []

    @property
    def alignment(self):
        v = self.kv.get("general.alignment")
        return int(v.value) if v is not None else DEFAULT_ALIGNMENT

    def get(self, key, default=None):
        """A key's value; strings decoded as UTF-8 (invalid bytes replaced)."""
        v = self.kv.get(key)
        if v is None:
            return default
        if v.vtype == STRING:
            return v.value.decode("utf-8", "replace")
        return v.value

    def set(self, key, vtype, value, elem_type=None):
        """Sets (or adds at the end) a key. Strings may be given as str."""
        if vtype == STRING and isinstance(value, str):
            value = value.encode("utf-8")
        if vtype == ARRAY and elem_type != STRING:
            value = np.asarray(value, dtype=_NP[elem_type])
        self.kv[key] = Value(vtype, value, elem_type)

    def tensor(self, name):
        for t in self.tensors:
            if t.name == name:
                return t
        return None

    def remove_tensor(self, name):
        self.tensors = [t for t in self.tensors if t.name != name]

    def add_tensor(self, name, array, after=None):
        """Adds a 2-D (or 1-D) float16/float32 numpy array as an f16/f32 tensor: shape (rows, cols) is
        stored with ne [cols, rows]. Replaces a tensor of that name; placed after tensor `after` when
        given and present, else at the end."""
        a = np.ascontiguousarray(array)
        if a.dtype == np.float32:
            ttype = TYPE_F32
        elif a.dtype == np.float16:
            ttype = TYPE_F16
        else:
            raise GGUFError("tensor %s: dtype %s; add_tensor takes float16 or float32" % (name, a.dtype))
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        t = Tensor(name, tuple(reversed(a.shape)), ttype, np.frombuffer(a.tobytes(), dtype=np.uint8))
        self.remove_tensor(name)
        idx = next((i + 1 for i, u in enumerate(self.tensors) if u.name == after), len(self.tensors))
        self.tensors.insert(idx, t)
        return t


def type_name(ttype):
    return TENSOR_TYPES[ttype][0] if ttype in TENSOR_TYPES else "type %d" % ttype


def tensor_nbytes(ne, ttype, name="?"):
    if ttype not in TENSOR_TYPES:
        raise GGUFError("tensor %s has %s, which gguf_py does not know (f32, f16, bf16, q8_0, q4_0)"
                        % (name, type_name(ttype)))
    _, block, size = TENSOR_TYPES[ttype]
    if ne[0] % block:
        raise GGUFError("tensor %s: ne[0] = %d is not a multiple of the %s block (%d)"
                        % (name, ne[0], type_name(ttype), block))
    n = 1
    for d in ne:
        n *= d
    return n // block * size


# ---- reading ----

class _Cursor:
    def __init__(self, buf, path):
        self.buf, self.pos, self.path = buf, 0, path

    def take(self, n, what):
        if n < 0 or self.pos + n > len(self.buf):
            raise GGUFError("gguf %s: %s at byte %d runs past the end of the file (%d bytes)"
                            % (self.path, what, self.pos, len(self.buf)))
        b = self.buf[self.pos:self.pos + n]
        self.pos += n
        return b

    def unpack(self, fmt, what):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))[0]

    def string(self, what):
        n = self.unpack("<Q", what + " length")
        return bytes(self.take(n, what))


def _read_value(c, vtype, key):
    if vtype in _SCALAR:
        v = c.unpack(_SCALAR[vtype], "key " + key)
        if vtype == BOOL:
            if v > 1:
                raise GGUFError("gguf %s: key %s: bool value %d is not 0 or 1" % (c.path, key, v))
            return bool(v)
        return v
    if vtype == STRING:
        return c.string("key " + key)
    raise GGUFError("gguf %s: key %s has unknown value type %d" % (c.path, key, vtype))


def read(path):
    """Reads a GGUF file. Tensor data is a read-only memory map of the file (nothing is copied), so
    large files are cheap; the map lives as long as the tensors do."""
    size = os.path.getsize(path)
    buf = np.memmap(path, dtype=np.uint8, mode="r") if size else np.zeros(0, np.uint8)
    c = _Cursor(memoryview(buf), path)
    magic = bytes(c.take(4, "magic"))
    if magic not in (b"GGUF", b"PWRI"):
        raise GGUFError("gguf %s: magic %r is neither GGUF nor PWRI: not a GGUF file" % (path, magic))
    f = GGUFFile(magic, path)
    f.version = c.unpack("<I", "version")
    if f.version not in (2, 3):
        raise GGUFError("gguf %s: version %d; gguf_py reads versions 2 and 3" % (path, f.version))
    n_tensors = c.unpack("<Q", "tensor count")
    n_kv = c.unpack("<Q", "key count")
    if n_kv > size // 13 or n_tensors > size // 32:
        raise GGUFError("gguf %s: %d keys / %d tensors cannot fit in %d bytes" % (path, n_kv, n_tensors, size))
    for _ in range(n_kv):
        key = c.string("key name").decode("utf-8", "replace")
        vtype = c.unpack("<I", "key " + key + " type")
        if key in f.kv:
            raise GGUFError("gguf %s: duplicate key %s" % (path, key))
        if vtype == ARRAY:
            et = c.unpack("<I", "key " + key + " element type")
            count = c.unpack("<Q", "key " + key + " count")
            if et == STRING:
                value = [c.string("key " + key) for _ in range(count)]
            elif et in _NP:
                width = np.dtype(_NP[et]).itemsize
                if count > (size - c.pos) // width:
                    raise GGUFError("gguf %s: key %s: array of %d elements runs past the end" % (path, key, count))
                value = np.frombuffer(c.take(count * width, "key " + key), dtype=_NP[et]).copy()
                if et == BOOL and value.size and value.max() > 1:
                    raise GGUFError("gguf %s: key %s: bool array holds a value other than 0 or 1" % (path, key))
            else:
                raise GGUFError("gguf %s: key %s: array element type %d is not supported" % (path, key, et))
            f.kv[key] = Value(ARRAY, value, et)
        else:
            f.kv[key] = Value(vtype, _read_value(c, vtype, key))
    a = f.kv.get("general.alignment")
    if a is not None and (a.vtype != U32 or a.value == 0 or a.value & (a.value - 1)):
        raise GGUFError("gguf %s: general.alignment must be a u32 power of two" % path)
    align = f.alignment
    infos = []
    for _ in range(n_tensors):
        name = c.string("tensor name").decode("utf-8", "replace")
        n_dims = c.unpack("<I", "tensor " + name + " dims")
        if not 1 <= n_dims <= 4:
            raise GGUFError("gguf %s: tensor %s has %d dimensions (1..4 allowed)" % (path, name, n_dims))
        ne = [c.unpack("<Q", "tensor " + name + " shape") for _ in range(n_dims)]
        ttype = c.unpack("<I", "tensor " + name + " type")
        offset = c.unpack("<Q", "tensor " + name + " offset")
        if any(d == 0 for d in ne):
            raise GGUFError("gguf %s: tensor %s has an empty dimension %s" % (path, name, ne))
        infos.append((name, ne, ttype, offset))
    data_start = (c.pos + align - 1) // align * align
    if infos and data_start > size:
        raise GGUFError("gguf %s: the data section would start at %d, past the end (%d bytes)"
                        % (path, data_start, size))
    seen = set()
    for name, ne, ttype, offset in infos:
        if name in seen:
            raise GGUFError("gguf %s: duplicate tensor %s" % (path, name))
        seen.add(name)
        nbytes = tensor_nbytes(ne, ttype, name)
        if offset % align or data_start + offset + nbytes > size:
            raise GGUFError("gguf %s: tensor %s (offset %d, %d bytes) is misaligned or outside the file"
                            % (path, name, offset, nbytes))
        start = data_start + offset
        f.tensors.append(Tensor(name, ne, ttype, buf[start:start + nbytes]))
    return f


# ---- writing ----

def _pack_value(out, vtype, value, key):
    if vtype in _SCALAR:
        out.append(struct.pack(_SCALAR[vtype], int(value) if vtype == BOOL else value))
    elif vtype == STRING:
        out.append(struct.pack("<Q", len(value)))
        out.append(bytes(value))
    else:
        raise GGUFError("key %s: unknown value type %d" % (key, vtype))


def _pack_kv(out, key, v):
    kb = key.encode("utf-8")
    out.append(struct.pack("<Q", len(kb)) + kb + struct.pack("<I", v.vtype))
    if v.vtype != ARRAY:
        _pack_value(out, v.vtype, v.value, key)
        return
    out.append(struct.pack("<IQ", v.elem_type, len(v.value)))
    if v.elem_type == STRING:
        for s in v.value:
            _pack_value(out, STRING, s, key)
    elif v.elem_type in _NP:
        out.append(np.asarray(v.value, dtype=_NP[v.elem_type]).tobytes())
    else:
        raise GGUFError("key %s: array element type %d is not supported" % (key, v.elem_type))


def write(path, f):
    """Writes f as GGUF version 3 (f.magic kept) to path atomically: a temp file in the same folder,
    renamed over path only when every byte is written."""
    align = f.alignment
    if align <= 0 or align & (align - 1):
        raise GGUFError("gguf %s: general.alignment %d is not a power of two" % (path, align))
    names = set()
    head = [f.magic, struct.pack("<IQQ", 3, len(f.tensors), len(f.kv))]
    for key, v in f.kv.items():
        _pack_kv(head, key, v)
    off, sizes = 0, []
    for t in f.tensors:
        if t.name in names:
            raise GGUFError("gguf %s: duplicate tensor %s" % (path, t.name))
        names.add(t.name)
        n = t.nbytes()
        if len(t.data) != n:
            raise GGUFError("gguf %s: tensor %s holds %d bytes, its shape and type need %d"
                            % (path, t.name, len(t.data), n))
        nb = t.name.encode("utf-8")
        head.append(struct.pack("<Q", len(nb)) + nb + struct.pack("<I", len(t.ne)))
        head.append(struct.pack("<%dQ" % len(t.ne), *t.ne) + struct.pack("<IQ", t.ttype, off))
        sizes.append(n)
        off += n
        off += (align - off % align) % align
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".tmp.", dir=d)
    try:
        with os.fdopen(fd, "wb") as out:
            hb = b"".join(head)
            out.write(hb)
            out.write(b"\0" * ((align - len(hb) % align) % align))
            for i, t in enumerate(f.tensors):
                out.write(memoryview(np.ascontiguousarray(t.data)).cast("B"))
                if i + 1 < len(f.tensors):
                    out.write(b"\0" * ((align - sizes[i] % align) % align))
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
