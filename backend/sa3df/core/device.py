"""Device choice in one place: CUDA, then Apple MPS, then CPU."""

from __future__ import annotations

import torch


def choose_device(preference: str | None = "auto") -> torch.device:
    """Return a torch device for ``preference`` ("auto", "cpu", "cuda", "cuda:1", "mps").

    "auto" picks CUDA when present, then MPS, then CPU. An explicit device that is not
    available raises ``ValueError`` naming it, rather than silently falling back.
    """
    pref = (preference or "auto").lower()
    if pref == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(pref)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"Device '{preference}' was asked for, but CUDA is not available here")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"Device '{preference}' was asked for, but MPS is not available here")
    return device


def default_dtype(device: torch.device) -> torch.dtype:
    """Half precision for inference of large image models on GPUs, float32 elsewhere."""
    return torch.float16 if device.type in ("cuda", "mps") else torch.float32
