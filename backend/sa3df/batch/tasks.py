"""The work of one batch task, run inside a Ray worker process: a group's meshes in, features out.

The task never writes outputs: it returns the arrays, and the driver writes each file atomically, so a
worker that dies mid-task leaves nothing behind and Ray can run the task again.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from sa3df.core import files as sio


@dataclass
class FeatureSettings:
    """How features are made (``sa3df batch``'s feature options). ``extractor`` is a registered name,
    "auto", or an extractor instance (pickled to the workers as it is)."""

    extractor: object = "geometric"
    checkpoint: Path | None = None
    steps: int = 0
    seed: int = 0
    device: str = "auto"
    cache: Path | None = None
    weights_dir: Path | None = None
    allow_downloads: bool = False
    up: str | None = None

    @property
    def extractor_label(self) -> str:
        return self.extractor if isinstance(self.extractor, str) else self.extractor.name


@dataclass
class GroupResult:
    """A task's answer: per mesh its features, or ``error`` (why the group failed)."""

    features: list[sio.MeshFeatures]
    error: str | None = None


def compute_group(sources: list[str], settings: FeatureSettings, cpu_threads: int) -> GroupResult:
    """Features of the meshes at ``sources`` through the single-process path
    (:func:`sa3df.features.pipeline.compute_surface_features`): test-time trained together when
    ``settings.steps`` > 0, else embedded with ``settings.checkpoint``. A bad mesh or setting comes back
    as ``error`` (retrying would fail again); only a dead worker makes Ray run the task again."""
    import torch

    from sa3df.features.pipeline import compute_surface_features
    from sa3df.features.train import TrainConfig

    torch.set_num_threads(max(1, int(cpu_threads)))
    try:
        meshes = [sio.load_mesh(Path(s)) for s in sources]
        train = TrainConfig(steps=settings.steps, seed=settings.seed, device=settings.device) if settings.steps > 0 else None
        extractor = _extractor(settings)
        result = compute_surface_features(meshes, extractor=extractor, checkpoint=settings.checkpoint,
                                          train_config=train, cache_dir=settings.cache, face_alike_up=settings.up)
    except (ValueError, RuntimeError, OSError) as error:
        return GroupResult([], f"{type(error).__name__}: {error}")
    return GroupResult([sio.MeshFeatures(m, f.base, f.embedding, result.extractor_name)
                        for m, f in zip(meshes, result.features)])


def _extractor(settings: FeatureSettings):
    if not isinstance(settings.extractor, str):
        return settings.extractor
    return _loaded_extractor(settings.extractor, settings.device, settings.weights_dir, settings.allow_downloads)


@functools.lru_cache(maxsize=1)
def _loaded_extractor(name: str, device: str, weights_dir: Path | None, allow_downloads: bool):
    """A Ray worker process runs many tasks in a row: load an extractor's models once per process."""
    from sa3df.features.extractors import choose_extractor

    return choose_extractor(name, device=device, weights_dir=weights_dir, allow_downloads=allow_downloads)
