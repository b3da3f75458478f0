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

import hashlib
import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from sa3df.core import storage
from sa3df.core.mesh import Mesh, from_arrays
from sa3df.core.progress import ProgressFn, sub_progress

# Test-time training steps per effort level (see sa3df.features.train.TrainConfig for the other settings).
EFFORT_STEPS = {"off": 0, "fast": 300, "normal": 600, "thorough": 2000}
# Modules holding the jobs (registered with @job on import); missing optional ones are skipped.
EXTRA_JOB_MODULES = ("sa3df.service.feature_jobs", "sa3df.service.motion_jobs")


@dataclass
class JobOutput:
    """Arrays to send back, plus small JSON-able facts for the user (counts, warnings)."""

    arrays: dict[str, np.ndarray]
    info: dict = field(default_factory=dict)


@dataclass
class FeatureSet:
    """Per-mesh features of one computation: ``base`` (N, D) and ``embedding`` (N, E), float32."""

    base: list[np.ndarray]
    embedding: list[np.ndarray]
    source: str = "computed"  # or "memory" / "disk" when a cache served it
    extractor: str = ""  # the base-feature extractor that ran ("auto" resolved)


class WorkerState:
    """What a worker keeps between jobs: surface features by (mesh contents, settings), in memory.

    Bounded to ``max_entries`` feature sets (oldest dropped first); the disk cache lives in the
    ``cache_dir`` the caller names.
    """

    def __init__(self, max_entries: int = 8):
        self.max_entries = max_entries
        self.features: dict[str, FeatureSet] = {}

    def remember(self, key: str, value: FeatureSet) -> None:
        self.features.pop(key, None)
        self.features[key] = value
        while len(self.features) > self.max_entries:
            self.features.pop(next(iter(self.features)))


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


def _settings_key(meshes: list[Mesh], settings: dict, extractor) -> str:
    """Cache key: the meshes' contents, the extractor actually chosen (with its settings), the
    training settings, and the checkpoint's weights file (its path and modification time)."""
    relevant = {k: settings.get(k) for k in ("effort", "seed", "up_axis")}
    relevant["faced_alike"] = True  # meshes are turned to face like the first before extraction
    relevant["extractor"] = extractor.cache_key()
    checkpoint = settings.get("checkpoint")
    if checkpoint:
        weights = Path(checkpoint) if Path(checkpoint).is_file() else Path(checkpoint, "model.safetensors")
        relevant["checkpoint"] = [str(checkpoint), weights.stat().st_mtime if weights.exists() else None]
    text = json.dumps([sorted(m.content_hash() for m in meshes), relevant], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def surface_features(meshes: list[Mesh], settings: dict, state: WorkerState,
                     progress: ProgressFn | None = None) -> FeatureSet:
    """Base features and surface-aware embeddings of ``meshes``, trained jointly on all of them.

    Cached by mesh contents and settings: in ``state`` (memory) and under ``settings["cache_dir"]``
    (disk). The meshes are processed in content-hash order, so the result does not depend on the
    order the caller lists them in. Returned lists follow the caller's order, per cleaned vertex.
    """
    extractor = _extractor(settings)
    key = _settings_key(meshes, settings, extractor)
    order = sorted(range(len(meshes)), key=lambda i: meshes[i].content_hash())
    cached, source = state.features.get(key), "memory"
    if cached is None:
        ordered = [meshes[i] for i in order]
        cached, source = _read_feature_cache(settings.get("cache_dir"), key, ordered), "disk"
    if cached is None:
        cached, source = _compute_features([meshes[i] for i in order], settings, extractor, progress), "computed"
        _write_feature_cache(settings.get("cache_dir"), key, cached)
    state.remember(key, cached)
    back = np.argsort(order)
    return FeatureSet([cached.base[j] for j in back], [cached.embedding[j] for j in back], source, extractor.name)


def _compute_features(meshes: list[Mesh], settings: dict, extractor, progress: ProgressFn | None) -> FeatureSet:
    """Effort "off" without a checkpoint: the (unit-row) base features stand in for the embedding.

    All meshes are first turned about the up axis to face like the first (extrinsic cues then agree)."""
    from sa3df.core.orient import face_like_first
    from sa3df.features.pipeline import FeatureCache, compute_surface_features

    meshes = face_like_first(meshes, settings.get("up_axis", "y"))
    effort = settings.get("effort", "fast")
    if effort not in EFFORT_STEPS:
        raise ValueError(f"Unknown training effort '{effort}' (use one of {', '.join(EFFORT_STEPS)})")
    checkpoint = settings.get("checkpoint") or None
    cache_dir = settings.get("cache_dir") or None
    if EFFORT_STEPS[effort] == 0 and checkpoint is None:
        cache = FeatureCache(Path(cache_dir, "features") if cache_dir else None)
        base = [cache.get(m, extractor, progress=sub_progress(progress, i / len(meshes), (i + 1) / len(meshes)))
                for i, m in enumerate(meshes)]
        base = [np.asarray(b, dtype=np.float32) for b in base]
        units = [b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12) for b in base]
        return FeatureSet(base, units)
    train_config = None
    if EFFORT_STEPS[effort] > 0:
        from sa3df.features.train import TrainConfig

        options = dict(steps=EFFORT_STEPS[effort], seed=int(settings.get("seed", 0)), device=settings.get("device", "auto"))
        train_config = TrainConfig(**options)
    result = compute_surface_features(
        meshes, extractor=extractor, checkpoint=checkpoint, train_config=train_config, cache_dir=cache_dir,
        progress=progress,
    )
    return FeatureSet(
        [np.asarray(f.base, dtype=np.float32) for f in result.features],
        [np.asarray(f.embedding, dtype=np.float32) for f in result.features],
    )


def _extractor(settings: dict):
    """The extractor named in the settings, with its device, weights and download options.

    ``weights_dir`` is a folder of model folders, named like the hub ids
    (``<weights_dir>/facebook/dinov2-base``) or by their last part (``<weights_dir>/dinov2-base``);
    models not found there are looked up in the Hugging Face cache as usual.
    """
    from sa3df.features.extractors import choose_extractor

    options = {"device": settings.get("device", "auto"), "up_axis": settings.get("up_axis", "y"),
               "allow_downloads": bool(settings.get("allow_download", False))}
    options.update(_local_models(settings.get("weights_dir")))
    return choose_extractor(settings.get("extractor", "auto"), **options)


def _local_models(weights_dir: str | None) -> dict:
    """Extractor model settings pointing at folders inside ``weights_dir`` when they exist there."""
    if not weights_dir:
        return {}
    from sa3df.features.extractors import diff3f, dino

    def local(hub_id: str) -> str:
        for candidate in (Path(weights_dir, hub_id), Path(weights_dir, hub_id.split("/")[-1])):
            if candidate.is_dir():
                return str(candidate)
        return hub_id

    found = {"dino_model": local(dino.DEFAULT_DINO), "sd_model": local(diff3f.DEFAULT_SD),
             "controlnets": tuple(local(c) for c in diff3f.DEFAULT_CONTROLNETS)}
    found["model"] = found["dino_model"]
    return found


def _cache_path(cache_dir: str | None, key: str) -> Path | None:
    return Path(cache_dir, "surface_features", f"{key}.npz") if cache_dir else None


def _read_feature_cache(cache_dir: str | None, key: str, meshes: list[Mesh]) -> FeatureSet | None:
    """The cached features of ``meshes`` (in content-hash order), or ``None`` when the entry is missing,
    damaged, another key's, or not one finite row per vertex: then they are recomputed."""
    path = _cache_path(cache_dir, key)
    data = storage.read_npz(path, key=key) if path is not None else None
    if data is None:
        return None
    base = [data.get(f"base{i}") for i in range(len(meshes))]
    embedding = [data.get(f"embedding{i}") for i in range(len(meshes))]
    for mesh, b, e in zip(meshes, base, embedding):
        if not (storage.finite_array(b, (mesh.n_vertices, None)) and storage.finite_array(e, (mesh.n_vertices, None))):
            return None
    return FeatureSet(base, embedding)


def _write_feature_cache(cache_dir: str | None, key: str, features: FeatureSet) -> None:
    path = _cache_path(cache_dir, key)
    if path is None:
        return
    arrays = {"key": key}
    arrays.update({f"base{i}": b for i, b in enumerate(features.base)})
    arrays.update({f"embedding{i}": e for i, e in enumerate(features.embedding)})
    storage.write_npz(path, arrays)
    storage.prune(path.parent, keep=path)


def features_for_job(ctx: JobContext, share: float = 0.8) -> tuple[list[Mesh], FeatureSet]:
    """The job's meshes and their features; feature work takes ``share`` of the progress bar."""
    meshes = meshes_from_inputs(ctx.inputs, ctx.params)
    settings = dict(ctx.params.get("features") or {})
    return meshes, surface_features(meshes, settings, ctx.state, sub_progress(ctx.progress, 0.0, share))


def clean_notes(meshes: list[Mesh]) -> dict:
    """What cleaning changed per mesh (only meshes that needed cleaning), for the user."""
    return {m.name: m.report.summary() for m in meshes if m.report.summary() != "clean"}


def feature_info(meshes: list[Mesh], features: FeatureSet) -> dict:
    """What every feature-based job tells the user: cleaning notes, which extractor ran, which cache served."""
    return {"cleaned": clean_notes(meshes), "extractor": features.extractor, "features_from": features.source}
