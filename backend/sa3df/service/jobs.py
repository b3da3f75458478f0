"""Named backend jobs for front ends (the Blender add-on's worker): arrays in, arrays out.

A job is a function ``fn(ctx: JobContext) -> JobOutput`` registered with ``@job("name")``. It reads
``ctx.inputs`` (arrays), ``ctx.params`` (JSON values), reports through ``ctx.progress`` and returns
arrays. Meshes travel as ``mesh{i}_vertices`` (N, 3) float and ``mesh{i}_faces`` (F, 3) int arrays,
``params["mesh_names"]`` naming them; every per-vertex result is per *input* vertex, in input order.

Feature settings (``params["features"]``): ``extractor`` ("auto", "geometric", "dino", "diff3f"),
``device``, ``checkpoint`` (folder, optional), ``effort`` (test-time training: "off", "fast",
"normal", "thorough"), ``seed``, ``cache_dir`` (optional), ``weights_dir``, ``allow_download``,
``up_axis`` ("z" for Blender scenes: rendered extractors orbit their cameras around it).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np

from sa3df.core.mesh import Mesh, from_arrays
from sa3df.core.progress import ProgressFn, sub_progress
if TYPE_CHECKING:
    from sa3df.features.pipeline import PipelineResult
from sa3df.features.settings import EFFORT_STEPS, FeatureSettings  # noqa: F401  (EFFORT_STEPS: the add-on's levels)

# Modules holding the jobs (registered with @job on import); missing optional ones are skipped.
EXTRA_JOB_MODULES = ("sa3df.service.feature_jobs", "sa3df.service.motion_jobs")


@dataclass
class JobOutput:
    """Arrays to send back, plus small JSON-able facts for the user (counts, warnings)."""

    arrays: dict[str, np.ndarray]
    info: dict = field(default_factory=dict)


class WorkerState:
    """What a worker keeps between jobs: the feature path's caches (base features, anchor pools and
    whole results, in memory and under the settings' ``cache_dir``)."""

    def __init__(self):
        self._caches = None
        self._folder = None

    def caches(self, folder):
        """The caches for ``folder`` (new ones when the folder changes)."""
        from sa3df.features.pipeline import PipelineCaches

        if self._caches is None or folder != self._folder:
            self._caches, self._folder = PipelineCaches.in_folder(folder, results_on_disk=True), folder
        return self._caches


@dataclass
class JobContext:
    inputs: dict[str, np.ndarray]
    params: dict
    progress: ProgressFn | None
    state: WorkerState


JobFn = Callable[[JobContext], JobOutput]
_JOBS: dict[str, JobFn] = {}


def job(name: str):
    """Decorator: register ``fn(ctx) -> JobOutput`` as the job ``name``."""

    def wrap(fn: JobFn) -> JobFn:
        _JOBS[name] = fn
        return fn

    return wrap


def _load_extra_modules() -> None:
    for module in EXTRA_JOB_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name != module:  # the module exists but one of its imports is missing
                raise


def job_names() -> list[str]:
    _load_extra_modules()
    return sorted(_JOBS)


def run_job(name: str, inputs: dict[str, np.ndarray], params: dict, progress: ProgressFn | None = None,
            state: WorkerState | None = None) -> JobOutput:
    """Run the job ``name``; raises ``ValueError`` for an unknown name."""
    _load_extra_modules()
    if name not in _JOBS:
        raise ValueError(f"Unknown job '{name}' (known: {', '.join(sorted(_JOBS))})")
    output = _JOBS[name](JobContext(inputs, params, progress, state or WorkerState()))
    return output if isinstance(output, JobOutput) else JobOutput(dict(output))


# ---------------------------------------------------------------------------------------------
# Meshes and features shared by the jobs


def meshes_from_inputs(inputs: dict[str, np.ndarray], params: dict) -> list[Mesh]:
    """Rebuild the job's meshes (cleaned, input vertex order kept)."""
    names = list(params.get("mesh_names") or [])
    count = sum(1 for key in inputs if key.startswith("mesh") and key.endswith("_vertices"))
    names += [f"mesh {i}" for i in range(len(names), count)]
    meshes = []
    for i in range(count):
        if f"mesh{i}_faces" not in inputs:
            raise ValueError(f"Job input for mesh '{names[i]}' has vertices but no faces")
        meshes.append(from_arrays(inputs[f"mesh{i}_vertices"], inputs[f"mesh{i}_faces"], name=names[i]))
    if not meshes:
        raise ValueError("The job got no meshes")
    return meshes


def meshes_to_inputs(meshes: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """The inverse of :func:`meshes_from_inputs` for a list of (vertices, faces) arrays."""
    arrays = {}
    for i, (vertices, faces) in enumerate(meshes):
        arrays[f"mesh{i}_vertices"] = np.asarray(vertices, dtype=np.float64)
        arrays[f"mesh{i}_faces"] = np.asarray(faces, dtype=np.int64)
    return arrays


def feature_settings(params: dict) -> FeatureSettings:
    """The job's feature settings (``params["features"]``)."""
    return FeatureSettings.from_params(params.get("features"))


def features_for_job(ctx: JobContext, share: float = 0.8) -> tuple[list[Mesh], PipelineResult]:
    """The job's meshes and their features (the CLI's feature path, with the worker's caches);
    feature work takes ``share`` of the progress bar."""
    from sa3df.features.pipeline import compute_surface_features

    meshes = meshes_from_inputs(ctx.inputs, ctx.params)
    settings = feature_settings(ctx.params)
    result = compute_surface_features(meshes, settings, sub_progress(ctx.progress, 0.0, share),
                                      ctx.state.caches(settings.cache_dir))
    return meshes, result


def clean_notes(meshes: list[Mesh]) -> dict:
    """What cleaning changed per mesh (only meshes that needed cleaning), for the user."""
    return {m.name: m.report.summary() for m in meshes if m.report.summary() != "clean"}
