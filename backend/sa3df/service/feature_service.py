"""What every feature job does first: rebuild the meshes from the job's arrays and compute their
features through the one feature path (:func:`sa3df.features.pipeline.compute_surface_features`),
with the caches the worker keeps."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from sa3df.core.mesh import Mesh, from_arrays
from sa3df.core.progress import sub_progress
from sa3df.features.settings import FeatureSettings
from sa3df.service import protocol
from sa3df.service.context import JobContext

if TYPE_CHECKING:
    from sa3df.features.pipeline import PipelineResult


def meshes_from_inputs(inputs: dict[str, np.ndarray], params: dict) -> list[Mesh]:
    """Rebuild the job's meshes (cleaned, input vertex order kept)."""
    names = list(params.get("mesh_names") or [])
    count = protocol.mesh_count(inputs)
    names += [f"mesh {i}" for i in range(len(names), count)]
    meshes = []
    for i in range(count):
        if protocol.mesh_faces(i) not in inputs:
            raise ValueError(f"Job input for mesh '{names[i]}' has vertices but no faces")
        meshes.append(from_arrays(inputs[protocol.mesh_vertices(i)], inputs[protocol.mesh_faces(i)], name=names[i]))
    if not meshes:
        raise ValueError("The job got no meshes")
    return meshes


def feature_settings(params: dict) -> FeatureSettings:
    """The job's feature settings (``params["features"]``, JSON form)."""
    return FeatureSettings.from_params(params.get("features"))


def features_for_job(ctx: JobContext, share: float = 0.8) -> tuple[list[Mesh], PipelineResult]:
    """The job's meshes and their features; feature work takes ``share`` of the progress bar."""
    from sa3df.features.pipeline import compute_surface_features

    meshes = meshes_from_inputs(ctx.inputs, ctx.params)
    settings = feature_settings(ctx.params)
    result = compute_surface_features(meshes, settings, sub_progress(ctx.progress, 0.0, share),
                                      ctx.state.caches(settings.cache_dir, settings.cache_limit_mb))
    return meshes, result


def clean_notes(meshes: list[Mesh]) -> dict:
    """What cleaning changed per mesh (only meshes that needed cleaning), for the user."""
    return {m.name: m.report.summary() for m in meshes if m.report.summary() != "clean"}


def feature_info(meshes: list[Mesh], result: PipelineResult) -> dict:
    """What every feature-based job tells the user: cleaning notes, which extractor ran, which cache served."""
    return {"cleaned": clean_notes(meshes), "extractor": result.extractor_name, "features_from": result.source}
