"""The work of one batch task, run inside a Ray worker process: a group's meshes in, features out.

The task never writes outputs: it returns the arrays, and the driver writes each file atomically, so a
worker that dies mid-task leaves nothing behind and Ray can run the task again.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path

from sa3df.core import files as sio
from sa3df.features.settings import FeatureSettings


@dataclass
class GroupResult:
    """A task's answer: per mesh its features, or ``error`` (why the group failed)."""

    features: list[sio.MeshFeatures]
    error: str | None = None


def compute_group(sources: list[str], settings: FeatureSettings, cpu_threads: int) -> GroupResult:
    """Features of the meshes at ``sources`` through the single-process path
    (:func:`sa3df.features.pipeline.compute_surface_features`): test-time trained together when
    ``settings.steps`` > 0, else embedded with ``settings.checkpoint`` (without one: base features only).
    A bad mesh or setting comes back as ``error`` (retrying would fail again); only a dead worker makes
    Ray run the task again."""
    import torch

    from sa3df.features.pipeline import compute_surface_features

    # torch's threads; BLAS and OpenMP follow OMP_NUM_THREADS, which Ray sets to the task's CPUs.
    torch.set_num_threads(max(1, int(cpu_threads)))
    try:
        meshes = [sio.load_mesh(Path(s)) for s in sources]
        result = compute_surface_features(meshes, with_loaded_extractor(settings))
    except (ValueError, RuntimeError, OSError) as error:
        return GroupResult([], f"{type(error).__name__}: {error}")
    return GroupResult(result.features)


def with_loaded_extractor(settings: FeatureSettings) -> FeatureSettings:
    """``settings`` holding an extractor instance, loaded once per worker process (Ray runs many tasks
    in one process: models such as Diff3F's load once, not once per mesh)."""
    if not isinstance(settings.extractor, str):
        return settings
    extractor = _loaded_extractor(settings.extractor, settings.device, settings.weights_dir,
                                  settings.allow_downloads, settings.up_axis)
    return dataclasses.replace(settings, extractor=extractor)


@functools.lru_cache(maxsize=1)
def _loaded_extractor(name: str, device: str, weights_dir, allow_downloads: bool, up_axis: str | None):
    from sa3df.features.pipeline import settings_extractor
    from sa3df.features.settings import FeatureSettings

    return settings_extractor(FeatureSettings(extractor=name, device=device, weights_dir=weights_dir,
                                              allow_downloads=allow_downloads, up_axis=up_axis))
