"""Reading NVIDIA network pickles (stylegan2-ada-pytorch ``network-snapshot-*.pkl``) as data.

Those files are plain Python pickles whose network modules are "persistent objects": each
pickles as a call of ``torch_utils.persistence._reconstruct_persistent_obj(meta)`` where
``meta`` carries the Python source of the defining module (``module_src``) and the module's
``__dict__`` (``state``). NVIDIA's loader executes that source. This reader never does: every
global the stream names is looked up in an allow-list of the few the format needs, and each maps
to a local function that builds plain data (``PersistentObject``, dicts, tensors, numbers).
Anything else — ``os.system`` in a ``__reduce__``, an unknown class, a persistent id — stops the
load before it runs, with a ``ModelFileError`` that names the global.
"""

from __future__ import annotations

import collections
import io
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelFileError

# The version of NVIDIA's persistence format this reader knows (torch_utils/persistence.py).
PERSISTENCE_VERSION = 6
PICKLE_MAGIC = b"\x80"
# A legacy (non-zip) torch.save file is a pickle too: protocol 2, then torch's magic number.
TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")


@dataclass
class PersistentObject:
    """A network module as stored in the pickle: its class name and its ``__dict__``.

    ``module_src`` is never kept, let alone run.
    """

    class_name: str
    version: int
    state: dict

    @property
    def modules(self) -> dict[str, PersistentObject]:
        mods = self.state.get("_modules") or {}
        return {k: v for k, v in mods.items() if isinstance(v, PersistentObject)}

    def attr(self, name: str, default: Any = None) -> Any:
        return self.state.get(name, default)

    def own_tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        skip = self.state.get("_non_persistent_buffers_set") or set()
        for group in ("_parameters", "_buffers"):
            for k, v in (self.state.get(group) or {}).items():
                if isinstance(v, torch.Tensor) and k not in skip:
                    yield k, v

    def state_dict(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Parameters and persistent buffers of the whole module tree, named as ``nn.Module.state_dict``."""
        out = {prefix + k: v for k, v in self.own_tensors()}
        for name, child in self.modules.items():
            out.update(child.state_dict(f"{prefix}{name}."))
        return out

    def walk(self, prefix: str = "") -> Iterator[tuple[str, PersistentObject]]:
        yield prefix, self
        for name, child in self.modules.items():
            yield from child.walk(f"{prefix}.{name}" if prefix else name)


class _EasyDict(dict):
    """Stands in for ``dnnlib.util.EasyDict`` (a dict with attribute access; only its items matter)."""


def _reconstruct_persistent_obj(meta: object) -> PersistentObject:
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise pickle.UnpicklingError("a persistent object without class metadata")
    version = meta.get("version")
    if not isinstance(version, int) or version > PERSISTENCE_VERSION:
        raise _FutureVersion(version)
    state = meta.get("state")
    name = meta.get("class_name")
    if not isinstance(state, dict) or not isinstance(name, str):
        raise pickle.UnpicklingError("a persistent object without a state or class name")
    return PersistentObject(name, version, state)


class _FutureVersion(pickle.UnpicklingError):
    def __init__(self, version: object):
        super().__init__(f"persistence format version {version!r}")
        self.version = version


def _no_hooks(hooks: object) -> None:
    if hooks:  # backward hooks are code; NVIDIA's files never carry any
        raise pickle.UnpicklingError("a tensor with backward hooks")


def _rebuild_tensor_v2(storage: object, offset: object, size: object, stride: object, requires_grad: object,
                       backward_hooks: object, metadata: object = None) -> torch.Tensor:
    if not isinstance(storage, (torch.UntypedStorage, torch.TypedStorage)):
        raise pickle.UnpicklingError(f"a tensor whose storage is a {type(storage).__name__}")
    if not (isinstance(offset, int) and isinstance(size, tuple) and isinstance(stride, tuple)
            and all(isinstance(i, int) and i >= 0 for i in (*size, *stride)) and len(size) == len(stride)):
        raise pickle.UnpicklingError("a tensor with malformed size or stride")
    _no_hooks(backward_hooks)
    typed = storage if isinstance(storage, torch.TypedStorage) else torch.TypedStorage(
        wrap_storage=storage, dtype=torch.uint8, _internal=True)
    t = torch.empty((0,), dtype=typed.dtype)
    try:
        t.set_(typed._untyped_storage, offset, size, stride)
    except RuntimeError as e:  # sizes that reach past the storage
        raise pickle.UnpicklingError(f"a tensor that does not fit its storage ({e})") from None
    return t


def _rebuild_parameter(data: object, requires_grad: object, backward_hooks: object) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise pickle.UnpicklingError("a parameter that is not a tensor")
    _no_hooks(backward_hooks)
    return data


def _load_from_bytes(blob: object) -> object:
    """One storage written by ``torch.save`` inside the pickle: read with torch's own data-only loader."""
    if not isinstance(blob, bytes):
        raise pickle.UnpicklingError("a storage blob that is not bytes")
    try:
        obj = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure of the nested loader means an unusable file
        raise pickle.UnpicklingError(f"a storage blob torch cannot read as data ({str(e).splitlines()[0]})") from None
    if not isinstance(obj, (torch.UntypedStorage, torch.TypedStorage, torch.Tensor)):
        raise pickle.UnpicklingError(f"a storage blob holding a {type(obj).__name__}")
    return obj


_NUMPY_KINDS = set("biufc?")


def _numpy_dtype(spec: object, align: object = False, copy: object = False) -> Any:
    import numpy as np

    if not isinstance(spec, str) or len(spec) > 8:
        raise pickle.UnpicklingError("a numpy dtype that is not a plain type code")
    dt = np.dtype(spec)
    if dt.kind not in _NUMPY_KINDS:
        raise pickle.UnpicklingError(f"numpy dtype {spec!r} is not a number type")
    return np.dtype(spec)  # a fresh instance: pickle's BUILD then sets its byte order


def _numpy_scalar(dtype: object, data: object = None) -> int | float | complex | bool:
    import numpy as np

    if not isinstance(dtype, np.dtype) or dtype.kind not in _NUMPY_KINDS or not isinstance(data, bytes) \
            or len(data) != dtype.itemsize:
        raise pickle.UnpicklingError("a numpy scalar that is not a plain number")
    return np.frombuffer(data, dtype=dtype)[0].item()


# Exactly the globals NVIDIA's network pickles need (see tests/fixtures/stylegan2_ada/README.md).
ALLOWED_GLOBALS: dict[tuple[str, str], Callable[..., Any] | type] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch.storage", "_load_from_bytes"): _load_from_bytes,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy", "dtype"): _numpy_dtype,
}

# Globals that identify a kind of file this reader does not take, so the refusal can say what it is.
_KNOWN_FOREIGN = {
    "dnnlib.tflib.network": "a TensorFlow StyleGAN/StyleGAN2 pickle (NVIDIA's TensorFlow code); only the PyTorch "
                            "network pickles of stylegan2-ada-pytorch are read",
}


class RefusedGlobal(pickle.UnpicklingError):
    def __init__(self, module: str, name: str):
        super().__init__(f"{module}.{name}")
        self.module, self.name = module, name


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        found = ALLOWED_GLOBALS.get((module, name))
        if found is None:
            raise RefusedGlobal(module, name)
        return found

    def persistent_load(self, pid: object) -> Any:
        raise pickle.UnpicklingError("a persistent id (not part of the network pickle format)")


def is_network_pickle(path: str | Path) -> bool:
    """True when the file starts like a binary pickle (protocol 2+) that is not a torch.save file."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(TORCH_LEGACY_MAGIC))
    except OSError:
        return False
    return head[:1] == PICKLE_MAGIC and head != TORCH_LEGACY_MAGIC


def read_network_pickle(path: str | Path) -> dict:
    """The top-level dict of a network pickle, its modules as ``PersistentObject``s; never runs code."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    if path.stat().st_size == 0:
        raise ModelFileError(f"{path} is empty")
    try:
        with open(path, "rb") as f:
            obj = _Unpickler(f).load()
    except RefusedGlobal as e:
        what = next((v for k, v in _KNOWN_FOREIGN.items() if e.module == k or e.module.startswith(k + ".")), None)
        if what:
            raise ModelFileError(f"{path} is {what}") from None
        raise ModelFileError(
            f"refused to load {path}: it names the Python global {e.module}.{e.name}, which is not part of a "
            "StyleGAN2-ADA network pickle (loading it could run code from the file)") from None
    except _FutureVersion as e:
        raise ModelFileError(f"{path} was written by a newer version of NVIDIA's network pickle format "
                             f"(persistence version {e.version}); this build reads up to "
                             f"version {PERSISTENCE_VERSION}") from None
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            MemoryError, OverflowError, RecursionError, UnicodeDecodeError) as e:
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelFileError(f"{path} is not a readable network pickle (truncated or corrupt?): {detail}") from None
    if not isinstance(obj, dict):
        raise ModelFileError(f"{path} is a pickle of a {type(obj).__name__}, not a network snapshot dict")
    return obj
