"""The interface every base-feature extractor implements, and the registry that names them.

An extractor turns a :class:`~sa3df.core.mesh.Mesh` into per-vertex features ``(N, D) float32``.
New extractors (rendered DINOv2, Diff3F, ...) register themselves with :func:`register` and plug
in without touching the trainer, the CLI or the add-on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

import numpy as np

from sa3df.core.mesh import Mesh
from sa3df.core.progress import ProgressFn


class MissingWeightsError(RuntimeError):
    """An extractor's model weights are not available locally and downloading is off."""


class BaseExtractor(ABC):
    """``name`` identifies the extractor in caches and checkpoints; ``dim`` is the feature width."""

    name: str = "base"
    dim: int = 0

    def __init__(self, device: str = "auto"):
        from sa3df.core.device import choose_device

        self.device = choose_device(device)

    @abstractmethod
    def extract(self, mesh: Mesh, progress: ProgressFn | None = None) -> np.ndarray:
        """Per-vertex features of ``mesh``: (mesh.n_vertices, self.dim) float32, finite."""

    def cache_key(self) -> str:
        """Identifies this extractor *and its settings* in feature caches."""
        return self.name

    def release(self) -> None:
        """Free models held in memory (GPU memory above all); the next extract reloads them."""

    @classmethod
    def is_available(cls, **settings) -> bool:
        """Whether this extractor can run here now (weights present, device capable)."""
        return True


_REGISTRY: dict[str, Callable[..., BaseExtractor]] = {}


def register(name: str):
    """Class decorator: make an extractor constructible by ``create_extractor(name, ...)``."""

    def wrap(cls):
        _REGISTRY[name] = cls
        return cls

    return wrap


def available_extractors() -> list[str]:
    return sorted(_REGISTRY)


def create_extractor(name: str, **settings) -> BaseExtractor:
    """Build a registered extractor by name; ``settings`` go to its constructor."""
    if name not in _REGISTRY:
        raise ValueError(f"Unknown extractor '{name}' (known: {', '.join(available_extractors())})")
    return _REGISTRY[name](**settings)
