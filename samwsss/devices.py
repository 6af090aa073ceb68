"""Device strings from users, checked once with a message that says what to pass.

:func:`check_device` answers before torch is imported where it can (no NVIDIA driver on
this machine, MPS asked for off macOS), so that a ``--device`` that cannot work is refused
before any model loads; otherwise it asks torch (:func:`resolve_device`).
"""

from __future__ import annotations

import ctypes
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

#: Platform -> file names of the NVIDIA driver library CUDA needs.
_CUDA_DRIVERS: dict[str, tuple[str, ...]] = {
    "linux": ("libcuda.so.1", "libcuda.so"),
    "win32": ("nvcuda.dll",),
}


def cuda_driver_present() -> bool | None:
    """Whether the NVIDIA driver library loads here: ``False`` means CUDA cannot work (torch
    needs that library too), ``True`` that it may (torch decides), ``None`` unknown."""
    if sys.platform == "darwin":
        return False  # no CUDA on macOS
    names = _CUDA_DRIVERS.get(sys.platform)
    if names is None:
        return None
    for name in names:
        try:
            ctypes.CDLL(name)
        except OSError:
            continue
        return True
    return False


def _no_cuda(device: object) -> str:
    return (
        f"device {str(device)!r} requested but CUDA is not available on this machine; use "
        "cpu (or leave the device out: it is cuda when a GPU is there, else cpu)"
    )


def _no_mps(device: object) -> str:
    return (
        f"device {str(device)!r} requested but MPS (Apple silicon GPU) is not available on "
        "this machine; use cpu, or cuda on an NVIDIA machine"
    )


def check_device(device: str | None) -> None:
    """Refuse now a device this machine cannot run on (nothing is returned or moved).

    ``None`` is always fine (the default picks CUDA when there, else the CPU). A CUDA device
    without an NVIDIA driver, or MPS off macOS, is refused without importing torch; the
    rest goes through :func:`resolve_device`.

    Raises:
        ValueError: naming the device and what to pass instead.
    """
    if device is None or str(device).strip() == "cpu":
        return
    kind = str(device).split(":", 1)[0].strip()
    if kind == "cuda" and cuda_driver_present() is False:
        raise ValueError(_no_cuda(device))
    if kind == "mps" and sys.platform != "darwin":
        raise ValueError(_no_mps(device))
    resolve_device(device)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` -> ``cuda`` when available, else ``cpu``; anything else is validated.

    Raises:
        ValueError: not a torch device (e.g. ``"gpu"``); CUDA asked for but not present, or
            a CUDA index this machine does not have (``cuda:3`` with one GPU); MPS asked
            for but not available.
    """
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(
            f"device {device!r} is not a torch device ({error}); use cpu, cuda or cuda:N"
        ) from None
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(_no_cuda(device))
        count = torch.cuda.device_count()
        if chosen.index is not None and chosen.index >= count:
            raise ValueError(
                f"device {str(device)!r} requested but this machine has {count} CUDA "
                f"device{'s' if count != 1 else ''} (cuda:0 to cuda:{count - 1}); use one of "
                "them, or cuda for the first"
            )
    if chosen.type == "mps":
        backend = getattr(torch.backends, "mps", None)
        if backend is None or not backend.is_available():
            raise ValueError(_no_mps(device))
    return chosen
