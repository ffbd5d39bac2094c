"""Read and write Torch7 binary serialisation (the `.t7` format of torch.save).

The reader is defensive: it never trusts a length it has not checked against the
bytes that remain, bounds nesting depth and object count, and reports every problem
as :class:`Torch7Error` ("not a Torch7 model: ..."), so an HTML page, a truncated
download or random bytes never reach OpenCV's importer (which can crash on them).

The writer covers what the fast-neural-style checkpoints contain: tables, numbers,
strings, booleans, float/double/long tensors and ``nn.*`` modules.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np

from .errors import ModelError, quote

# Type tags of torch/File.lua.
TYPE_NIL = 0
TYPE_NUMBER = 1
TYPE_STRING = 2
TYPE_TABLE = 3
TYPE_TORCH = 4
TYPE_BOOLEAN = 5

# Limits of the reader (the README's Reliability section lists them): a published
# checkpoint is about 7 MB, nests 12 levels deep and holds about 3,000 objects.
MAX_FILE_BYTES = 1 << 30
MAX_DEPTH = 200
MAX_OBJECTS = 1_000_000
MAX_CLASS_NAME = 200
MAX_TENSOR_DIMS = 8

_TENSOR_DTYPES = {
    "torch.FloatTensor": np.float32,
    "torch.DoubleTensor": np.float64,
    "torch.LongTensor": np.int64,
    "torch.IntTensor": np.int32,
    "torch.ByteTensor": np.uint8,
    "torch.CudaTensor": np.float32,
}
_STORAGE_DTYPES = {name.replace("Tensor", "Storage"): dtype for name, dtype in _TENSOR_DTYPES.items()}
_DTYPE_TENSOR = {
    np.dtype(np.float32): "torch.FloatTensor",
    np.dtype(np.float64): "torch.DoubleTensor",
    np.dtype(np.int64): "torch.LongTensor",
    np.dtype(np.int32): "torch.IntTensor",
    np.dtype(np.uint8): "torch.ByteTensor",
}


class Torch7Error(ModelError):
    """The bytes are not a well-formed Torch7 file."""

    def __init__(self, problem: str):
        super().__init__(f"not a Torch7 model: {problem}")


@dataclass(eq=False)
class TorchObject:
    """A serialised Torch class instance other than a tensor, e.g. ``nn.SpatialConvolution``.

    ``fields`` is the Lua table of the instance (``weight``, ``kW``, ``modules``...).
    """

    class_name: str
    fields: dict = field(default_factory=dict)
    version: int = 1

    @property
    def children(self) -> list["TorchObject"]:
        """The ``modules`` of a container, in order (empty for other modules)."""
        return lua_list(self.fields.get("modules", {}))

    def __repr__(self) -> str:
        return f"TorchObject({self.class_name!r})"


def lua_list(table: Any) -> list:
    """The array part of a Lua table read as a dict with keys 1..n."""
    if isinstance(table, list):
        return table
    if not isinstance(table, dict):
        return []
    items = []
    index = 1
    while index in table:
        items.append(table[index])
        index += 1
    return items


# ---------------------------------------------------------------- reader


class _Reader:
    def __init__(self, data: bytes):
        self.data = memoryview(data)
        self.pos = 0
        self.memo: dict[int, Any] = {}
        self.count = 0

    def _take(self, size: int, what: str) -> memoryview:
        if size < 0 or self.pos + size > len(self.data):
            raise Torch7Error(
                f"truncated: {what} needs {size} bytes at offset {self.pos}, "
                f"file has {len(self.data)}"
            )
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def int32(self, what: str = "an integer") -> int:
        return struct.unpack("<i", self._take(4, what))[0]

    def int64(self, what: str = "a long") -> int:
        return struct.unpack("<q", self._take(8, what))[0]

    def double(self) -> float:
        return struct.unpack("<d", self._take(8, "a number"))[0]

    def string(self) -> str:
        length = self.int32("a string length")
        raw = bytes(self._take(length, "a string"))
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("latin-1")

    def object(self, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise Torch7Error(f"nesting deeper than {MAX_DEPTH} levels at offset {self.pos}")
        self.count += 1
        if self.count > MAX_OBJECTS:
            raise Torch7Error(f"more than {MAX_OBJECTS} objects")
        start = self.pos
        tag = self.int32("a type tag")
        if tag == TYPE_NIL:
            return None
        if tag == TYPE_NUMBER:
            value = self.double()
            return int(value) if value.is_integer() and abs(value) < 2**53 else value
        if tag == TYPE_STRING:
            return self.string()
        if tag == TYPE_BOOLEAN:
            return self.int32("a boolean") == 1
        if tag == TYPE_TABLE:
            return self._table(depth)
        if tag == TYPE_TORCH:
            return self._torch(depth)
        raise Torch7Error(f"unknown type tag {tag} at offset {start}")

    def _table(self, depth: int) -> dict:
        index = self.int32("a table index")
        if index in self.memo:
            return self.memo[index]
        size = self.int32("a table size")
        # Each entry takes at least 8 bytes (two type tags): reject impossible sizes early.
        if size < 0 or size * 8 > len(self.data) - self.pos:
            raise Torch7Error(f"table of {size} entries does not fit in the file (offset {self.pos})")
        table: dict = {}
        self.memo[index] = table
        for _ in range(size):
            key = self.object(depth + 1)
            value = self.object(depth + 1)
            if isinstance(key, (dict, list, TorchObject, np.ndarray)):
                raise Torch7Error(f"unsupported table key type at offset {self.pos}")
            table[key] = value
        return table

    def _torch(self, depth: int) -> Any:
        index = self.int32("an object index")
        if index in self.memo:
            return self.memo[index]
        head = self.string()
        if head.startswith("V "):
            try:
                version = int(head[2:])
            except ValueError:
                raise Torch7Error(f"bad class version {quote(repr(head), 60)}") from None
            class_name = self.string()
        else:
            version, class_name = 0, head
        if not class_name or len(class_name) > MAX_CLASS_NAME or not class_name.isprintable():
            raise Torch7Error(f"bad class name {quote(repr(class_name), 60)}")
        if class_name in _TENSOR_DTYPES:
            tensor = self._tensor(class_name, depth)
            self.memo[index] = tensor
            return tensor
        if class_name in _STORAGE_DTYPES:
            storage = self._storage(_STORAGE_DTYPES[class_name])
            self.memo[index] = storage
            return storage
        obj = TorchObject(class_name, {}, version)
        self.memo[index] = obj
        fields = self.object(depth + 1)
        if not isinstance(fields, dict):
            raise Torch7Error(f"{class_name} has no field table")
        obj.fields = fields
        return obj

    def _tensor(self, class_name: str, depth: int) -> np.ndarray:
        ndim = self.int32("a tensor's dimension count")
        if not 0 <= ndim <= MAX_TENSOR_DIMS:
            raise Torch7Error(f"{class_name} with {ndim} dimensions")
        sizes = [self.int64("a tensor size") for _ in range(ndim)]
        strides = [self.int64("a tensor stride") for _ in range(ndim)]
        offset = self.int64("a tensor offset") - 1
        storage = self.object(depth + 1)
        dtype = _TENSOR_DTYPES[class_name]
        if ndim == 0 or storage is None:
            return np.zeros((0,), dtype=dtype)
        if not isinstance(storage, np.ndarray):
            raise Torch7Error(f"{class_name} without a storage")
        if any(s < 0 for s in sizes) or any(not 0 <= s <= storage.size for s in strides) or offset < 0:
            raise Torch7Error(f"{class_name} with a negative size or offset, or a bad stride")
        count = 1
        for size in sizes:
            count *= size  # Python ints: no overflow on hostile sizes
        if count == 0:
            return np.zeros(sizes, dtype=dtype)
        # Zero or huge strides could make a few stored numbers claim terabytes.
        if count > storage.size:
            raise Torch7Error(f"{class_name} of shape {tuple(sizes)} is larger than its storage")
        last = offset + sum((n - 1) * s for n, s in zip(sizes, strides))
        if last >= storage.size:
            raise Torch7Error(f"{class_name} of shape {tuple(sizes)} overruns its storage")
        item = storage.itemsize
        view = np.lib.stride_tricks.as_strided(
            storage[offset:], shape=sizes, strides=[s * item for s in strides], writeable=False
        )
        return np.array(view, dtype=dtype)

    def _storage(self, dtype: type) -> np.ndarray:
        size = self.int64("a storage size")
        itemsize = np.dtype(dtype).itemsize
        if size < 0 or size * itemsize > len(self.data) - self.pos:
            raise Torch7Error(
                f"storage of {size} elements does not fit in the file (offset {self.pos})"
            )
        raw = self._take(size * itemsize, "storage data")
        return np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype)


def loads(data: bytes) -> Any:
    """Decode one Torch7 object from ``data``; raise :class:`Torch7Error` if it is not one."""
    if not data:
        raise Torch7Error("the file is empty")
    head = bytes(data[:512])
    if head.isascii() and all(c >= 32 or c in b"\t\r\n" for c in head):
        snippet = head.decode("ascii").strip()[:60]
        raise Torch7Error(
            f"it is a text file (an HTML page or an error message?), starting {snippet!r}"
        )
    reader = _Reader(data)
    try:
        value = reader.object()
    except RecursionError:
        raise Torch7Error("nesting too deep") from None
    if reader.pos != len(data):
        raise Torch7Error(f"{len(data) - reader.pos} unexpected bytes after the object")
    return value


def load(path) -> Any:
    """Read the Torch7 file at ``path``; see :func:`loads`."""
    with open(path, "rb") as handle:
        data = handle.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise Torch7Error(f"larger than {MAX_FILE_BYTES >> 20} MiB")
    return loads(data)


# ---------------------------------------------------------------- writer


class _Writer:
    def __init__(self, out: BinaryIO):
        self.out = out
        self.next_index = 1
        self.written: dict[int, int] = {}

    def int32(self, value: int) -> None:
        self.out.write(struct.pack("<i", value))

    def int64(self, value: int) -> None:
        self.out.write(struct.pack("<q", value))

    def string(self, value: str) -> None:
        raw = value.encode("utf-8")
        self.int32(len(raw))
        self.out.write(raw)

    def _index(self, obj: Any) -> tuple[int, bool]:
        """Object index, and whether the object was written before (a shared reference)."""
        key = id(obj)
        if key in self.written:
            return self.written[key], True
        index = self.next_index
        self.next_index += 1
        self.written[key] = index
        return index, False

    def object(self, value: Any) -> None:
        if value is None:
            self.int32(TYPE_NIL)
        elif isinstance(value, bool):
            self.int32(TYPE_BOOLEAN)
            self.int32(1 if value else 0)
        elif isinstance(value, (int, float, np.integer, np.floating)):
            self.int32(TYPE_NUMBER)
            self.out.write(struct.pack("<d", float(value)))
        elif isinstance(value, str):
            self.int32(TYPE_STRING)
            self.string(value)
        elif isinstance(value, (dict, list)):
            self._table(value)
        elif isinstance(value, np.ndarray):
            self._tensor(value)
        elif isinstance(value, TorchObject):
            self.int32(TYPE_TORCH)
            index, seen = self._index(value)
            self.int32(index)
            if not seen:
                self.string(f"V {value.version}")
                self.string(value.class_name)
                self._table(value.fields)
        else:
            raise TypeError(f"cannot write {type(value).__name__} to Torch7")

    def _table(self, value: dict | list) -> None:
        self.int32(TYPE_TABLE)
        index, seen = self._index(value)
        self.int32(index)
        if seen:
            return
        items = list(enumerate(value, start=1)) if isinstance(value, list) else list(value.items())
        self.int32(len(items))
        for key, item in items:
            self.object(key)
            self.object(item)

    def _tensor(self, array: np.ndarray) -> None:
        class_name = _DTYPE_TENSOR.get(array.dtype)
        if class_name is None:
            raise TypeError(f"no Torch7 tensor type for {array.dtype}")
        self.int32(TYPE_TORCH)
        index, seen = self._index(array)
        self.int32(index)
        if seen:
            return
        self.string("V 1")
        self.string(class_name)
        self.int32(array.ndim if array.size else 0)
        if not array.size:
            self.int64(1)  # storage offset (1-based), then no storage
            self.int32(TYPE_NIL)
            return
        contiguous = np.ascontiguousarray(array)
        strides = [s // contiguous.itemsize for s in contiguous.strides]
        for size in contiguous.shape:
            self.int64(size)
        for stride in strides:
            self.int64(stride)
        self.int64(1)
        self.int32(TYPE_TORCH)
        self.int32(self.next_index)
        self.next_index += 1
        self.string("V 1")
        self.string(class_name.replace("Tensor", "Storage"))
        self.int64(contiguous.size)
        self.out.write(contiguous.astype(contiguous.dtype.newbyteorder("<"), copy=False).tobytes())


def dump(value: Any, out: BinaryIO) -> None:
    """Serialise ``value`` (tables as dict/list, tensors as numpy arrays, modules as
    :class:`TorchObject`) in Torch7 binary format."""
    _Writer(out).object(value)
