"""Device strings from users, checked once with a message that says what to pass."""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` -> ``cuda`` when available, else ``cpu``; anything else is validated.

    Raises:
        ValueError: not a torch device (e.g. ``"gpu"``), or CUDA asked for but not present.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(
            f"device {device!r} is not a torch device ({error}); use cpu, cuda or cuda:N"
        ) from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use cpu")
    return chosen
