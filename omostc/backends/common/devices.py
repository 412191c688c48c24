"""Devices and dtypes every torch backend needs: names checked before anything loads."""

from __future__ import annotations

from typing import Any

from omostc.diagnostics import ModelError

DTYPES = ("fp32", "fp16", "bf16")


def torch_dtype(name: str):
    import torch

    table = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if name not in table:
        raise ModelError(f"dtype must be one of {', '.join(DTYPES)}, not {name!r}")
    return table[name]


def check_device(device: str) -> None:
    """A device torch can use here, or a ModelError that says why not (before anything loads)."""
    import torch

    try:
        kind = torch.device(device).type
    except RuntimeError as exc:
        raise ModelError(f"unknown device {device!r} ({exc}); use cuda, cpu or mps") from None
    if kind == "cuda" and not torch.cuda.is_available():
        why = "no CUDA device is visible" if torch.version.cuda else f"this torch ({torch.__version__}) has no CUDA"
        raise ModelError(f"device {device!r} is not available: {why}; use --device cpu")
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ModelError(f"device {device!r} is not available here; use --device cpu")


def default_device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def with_resolved_dtype(options: Any, accelerator_dtype: str) -> Any:
    """A backend's options with the dtype made explicit (fp32 on a CPU, ``accelerator_dtype``
    elsewhere), so a PNG records, and its key covers, what actually rendered it; the device,
    which changes no setting's meaning, stays as given."""
    from dataclasses import replace

    if options.dtype is not None:
        return options
    device = options.device or default_device()
    return replace(options, dtype="fp32" if device.split(":")[0] == "cpu" else accelerator_dtype)
