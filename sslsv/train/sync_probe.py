"""A probe of what would make the host wait for a GPU in a training step, runnable on the CPU.

On CUDA, ``torch.cuda.set_sync_debug_mode("error")`` catches a synchronisation where it
happens, but only on a machine with a GPU. This probe finds the same code on any machine by
what it asks torch to do, telling the step's *device* tensors (the weights and buffers
given to the probe, tensors made with a ``device=``, uploads, and whatever is computed from
any of them) from its *host* tensors (everything else: random choices drawn from a CPU
generator, Python data, tables kept on the host), as they would be on a GPU:

- **host reads**: ops on device tensors that copy a value to the host or size their output
  by the data (``.item()``, ``float(t)``, ``nonzero``, boolean-mask indexing, ``bincount``,
  which reads its input's min and max, ``unique``, ``.tolist()``, ``.cpu()``, ...): the host
  waits for everything queued before;
- **host data**: a host tensor used by an op on device tensors (``mask[rows, cols] = True``
  assigns a Python scalar made into a host tensor): on a GPU, a pageable copy at each call;
- **blocking copies**: ``.to(device)`` / ``.cuda()`` of a host tensor without
  ``non_blocking=True``, which on a GPU waits for the copy (uploads belong in
  :func:`sslsv.devices.upload`, pinned and asynchronous).

Only calls issued from the project's own code are counted (the innermost Python frame is in
the ``sslsv`` package): what torch does inside ``F.cross_entropy`` or the optimizer is
torch's business, and the CUDA tests check the whole step with the sync debug mode.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.weak import WeakTensorKeyDictionary

PACKAGE = Path(__file__).resolve().parents[1]

#: aten ops that read device data back to the host (or size an output by it) on CUDA.
HOST_READ_OPS = {
    "aten._local_scalar_dense",  # .item(), float(t), int(t), bool(t), `if t:`
    "aten.nonzero",
    "aten.argwhere",
    "aten.masked_select",
    "aten.bincount",  # reads min and max of its input to size the output
    "aten.histc",
    "aten._unique",
    "aten._unique2",
    "aten.unique_dim",
    "aten.unique_consecutive",
    "aten.equal",
    "aten.is_nonzero",
    "aten.allclose",
    "aten.repeat_interleave",  # the output size, unless output_size is given
    "aten._assert_async",
}
#: aten ops that make a tensor from Python data.
PYTHON_DATA_OPS = {"aten.lift_fresh", "aten.lift_fresh_copy"}
#: Tensor methods that read a tensor back to the host.
READ_METHODS = {"tolist", "numpy", "cpu", "item"}
#: Tensor methods that move data to a device; blocking unless ``non_blocking=True``.
COPY_METHODS = {"to", "cuda"}


@dataclass(frozen=True)
class Event:
    kind: str  # "host read" | "host data" | "blocking copy"
    op: str
    where: str  # file:line in the package

    def __str__(self) -> str:
        return f"{self.kind}: {self.op} at {self.where}"


#: Frames of the modes' own plumbing (torch wraps a mode's handler in these), skipped to
#: find the code that issued the call.
PLUMBING = (
    str(Path(torch.__file__).parent / "_compile.py"),
    str(Path(torch.__file__).parent / "_dynamo"),
    str(Path(torch.__file__).parent / "utils" / "_python_dispatch.py"),
    str(Path(torch.__file__).parent / "overrides.py"),
    __file__,
)


def _caller() -> str | None:
    """``sslsv/...:line`` of the innermost Python frame that is not plumbing, when it is the
    package's own code; None when it is anyone else's (torch's, a test's)."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(PLUMBING):
        frame = frame.f_back
    if frame is None:
        return None
    path = Path(frame.f_code.co_filename).resolve()
    if not path.is_relative_to(PACKAGE):
        return None
    return f"{path.relative_to(PACKAGE.parent)}:{frame.f_lineno}"


def _op_name(func) -> str:
    return func.overloadpacket._qualified_op_name.replace("::", ".")


def _bool_index(name: str, args: tuple) -> bool:
    if name not in ("aten.index", "aten.index_put", "aten.index_put_") or len(args) < 2:
        return False
    indices = args[1] if isinstance(args[1], list | tuple) else []
    return any(
        isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in indices
    )


def _target_device(func, args: tuple, kwargs: dict) -> bool:
    """Whether a ``to``/``cuda`` call names a device (not only a dtype)."""
    name = getattr(func, "__name__", "")
    if name == "cuda":
        return True
    if name != "to":
        return False
    if "device" in kwargs:
        return True
    return bool(args[1:]) and isinstance(args[1], torch.device | str | torch.Tensor)


def _non_blocking(func, args: tuple, kwargs: dict) -> bool:
    if "non_blocking" in kwargs:
        return bool(kwargs["non_blocking"])
    # to(device, dtype, non_blocking) / cuda(device, non_blocking) given positionally
    flags = [a for a in args[1:] if isinstance(a, bool)]
    return bool(flags and flags[0])


def _copied_to_device(func, t: torch.Tensor, on_device: bool) -> bool:
    """Whether a host input of an op on device tensors would be copied to the device. A
    0-d host tensor in a pointwise op is not: TensorIterator reads it on the host as a
    scalar (``torch.where(c, x, 5)``, ``x * torch.tensor(2.0)``); elsewhere it is
    (``mask[rows, cols] = True`` copies the True)."""
    if on_device:
        return False
    return t.dim() > 0 or torch.Tag.pointwise not in func.tags


def _tensors(tree) -> list[torch.Tensor]:
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, list | tuple):
        return [t for item in tree for t in _tensors(item)]
    if isinstance(tree, dict):
        return [t for item in tree.values() for t in _tensors(item)]
    return []


class _FunctionProbe(TorchFunctionMode):
    def __init__(self, owner: SyncProbe) -> None:
        super().__init__()
        self.owner = owner

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        source = args[0] if args and isinstance(args[0], torch.Tensor) else None
        if source is None:
            result = func(*args, **kwargs)
            if kwargs.get("device") is not None and not _tensors(args):
                # A factory that names a device (torch.zeros(..., device=d)); without one it
                # makes a host tensor (the default device is the CPU).
                for t in _tensors(result):
                    self.owner.device[t] = True
            return result
        on_device = self.owner.on_device(source)
        if name in READ_METHODS and on_device:
            self.owner._record("host read", f"Tensor.{name}")
            return func(*args, **kwargs)
        if on_device or not _target_device(func, args, kwargs):
            return func(*args, **kwargs)
        # An upload of a host tensor.
        if not _non_blocking(func, args, kwargs):
            self.owner._record("blocking copy", f"Tensor.{name}")
        result = func(*args, **kwargs)
        if result is source:  # on the CPU a move to the CPU is the same tensor: make it new
            result = result.clone()
        self.owner.device[result] = True
        return result


class _DispatchProbe(TorchDispatchMode):
    def __init__(self, owner: SyncProbe) -> None:
        super().__init__()
        self.owner = owner

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = _op_name(func)
        inputs = _tensors(args) + _tensors(kwargs)
        on_device = [self.owner.on_device(t) for t in inputs]
        if any(on_device):
            if name in HOST_READ_OPS or _bool_index(name, args):
                self.owner._record("host read", name)
            elif any(_copied_to_device(func, t, d) for t, d in zip(inputs, on_device)):
                self.owner._record("host data", name)
        out = func(*args, **kwargs)
        # What is computed from a device tensor is on the device (factories are marked by
        # the function probe, which sees whether the caller named a device); Python data
        # (lift_fresh) is on the host.
        if any(on_device) and name not in PYTHON_DATA_OPS:
            for t in _tensors(out):
                self.owner.device[t] = True
        return out


class SyncProbe:
    """Context manager recording the events above; ``events`` lists them in order.
    ``device_tensors``: the tensors that live on the device before the probe starts (the
    model's weights and buffers, the augmentation sets laid out on the device).

    >>> with SyncProbe(trainer_device_tensors(trainer)) as probe:
    ...     trainer.train_step(waves, 0, 1)
    >>> probe.events  # [] when the step never makes the host wait
    """

    def __init__(self, device_tensors: Iterable[torch.Tensor] = ()) -> None:
        self.events: list[Event] = []
        #: The device tensors (weakly held).
        self.device = WeakTensorKeyDictionary()
        for t in device_tensors:
            self.device[t] = True
        self._function = _FunctionProbe(self)
        self._dispatch = _DispatchProbe(self)

    def _record(self, kind: str, op: str) -> None:
        where = _caller()
        if where is not None:
            self.events.append(Event(kind, op, where))

    def on_device(self, t: torch.Tensor) -> bool:
        return t in self.device

    def __enter__(self) -> SyncProbe:
        self._function.__enter__()
        self._dispatch.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._dispatch.__exit__(*exc)
        self._function.__exit__(*exc)

    def summary(self) -> dict[str, int]:
        """Count of each ``kind: op at where``."""
        return dict(Counter(str(e) for e in self.events))


def trainer_device_tensors(trainer) -> list[torch.Tensor]:
    """What a :class:`sslsv.train.trainer.Trainer` keeps on its device: the method's weights
    and buffers, and the augmenter's per-device state (its dicts keyed by a device)."""
    tensors = list(trainer.method.parameters()) + list(trainer.method.buffers())
    augmenter = trainer.step_fn.augmenter
    if augmenter is not None:
        for value in vars(augmenter).values():
            if isinstance(value, dict):
                for key, state in value.items():
                    first = key[0] if isinstance(key, tuple) else key
                    if isinstance(first, torch.device):
                        tensors += _reachable(state)
    return tensors


def _reachable(obj, depth: int = 0) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if depth > 3:
        return []
    if isinstance(obj, list | tuple):
        return [t for item in obj for t in _reachable(item, depth + 1)]
    if isinstance(obj, dict):
        return [t for item in obj.values() for t in _reachable(item, depth + 1)]
    if hasattr(obj, "__dict__"):
        return [t for item in vars(obj).values() for t in _reachable(item, depth + 1)]
    return []
