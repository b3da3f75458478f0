"""From meshes to surface-aware features in one call: base features (cached), train or load, embed.

This is what the CLI, the Blender worker and the demo call::

    result = compute_surface_features([mesh_a, mesh_b], FeatureSettings(steps=300))  # test-time training on both
    result.features[0].embedding                                  # (N_a, E) unit rows
    result.save("my_network")                                     # reuse later via checkpoint=
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from sa3df.core.files import MeshFeatures
from sa3df.core.geodesics import AnchorCache
from sa3df.core import storage
from sa3df.core.mesh import Mesh
from sa3df.core.orient import face_like_first
from sa3df.core.progress import ProgressFn, report, sub_progress
from sa3df.features.checkpoint import load_checkpoint, save_checkpoint
from sa3df.features.extractors import BaseExtractor, choose_extractor
from sa3df.features.network import SurfaceNetwork
from sa3df.features.proxy import Proxy, build_proxy, needs_proxy
from sa3df.features.settings import FeatureSettings
from sa3df.features.train import TrainConfig, TrainingSample, embed, train_surface_network


class FeatureCache:
    """Base features per (mesh content, extractor settings), in memory and, with ``folder``, on disk.

    Files are ``<folder>/<mesh hash>_<extractor key>.npz`` holding the float32 features and their key
    (:mod:`sa3df.core.storage`: atomic, checked on read, the folder kept under its size limit). An
    entry that is damaged, of the wrong shape or not finite is recomputed and replaced.
    """

    def __init__(self, folder: str | os.PathLike | None = None, limit_mb: float | None = None):
        self.folder = Path(folder) if folder else None
        self.limit_mb = limit_mb  # the folder's size limit (None: storage's default)
        self._memory: dict[str, np.ndarray] = {}

    @staticmethod
    def key(mesh: Mesh, extractor: BaseExtractor) -> str:
        return f"{mesh.content_hash()}_{re.sub(r'[^A-Za-z0-9_.-]+', '-', extractor.cache_key())}"

    def get(self, mesh: Mesh, extractor: BaseExtractor, progress: ProgressFn | None = None) -> np.ndarray:
        """(N, D) float32 base features of ``mesh``: from memory, disk, or ``extractor.extract``."""
        key = self.key(mesh, extractor)
        if key in self._memory:
            return self._memory[key]
        require_surface(mesh)
        path = self.folder / f"{key}.npz" if self.folder else None
        features = self._read(path, key, mesh) if path is not None else None
        if features is None:
            features = np.asarray(extractor.extract(mesh, progress=progress), dtype=np.float32)
            if not storage.finite_array(features, (mesh.n_vertices, None)):
                raise ValueError(
                    f"Extractor '{extractor.name}' returned {features.shape} values (finite: "
                    f"{bool(np.isfinite(features).all())}) for mesh '{mesh.name}' with {mesh.n_vertices} vertices"
                )
            if path is not None:
                storage.write_npz(path, {"key": key, "features": features})
                storage.prune(self.folder, storage.cache_limit_bytes(self.limit_mb), keep=path)
        self._memory[key] = features
        return features

    @staticmethod
    def _read(path: Path, key: str, mesh: Mesh) -> np.ndarray | None:
        arrays = storage.read_npz(path, key=key)
        features = None if arrays is None else arrays.get("features")
        return features if storage.finite_array(features, (mesh.n_vertices, None)) else None


MIN_VERTICES = 4


def require_surface(mesh: Mesh) -> None:
    """Raise ``ValueError`` for a mesh too small to have spectra or geodesics worth the name."""
    if mesh.n_vertices < MIN_VERTICES or len(mesh.faces) < 2:
        raise ValueError(f"Mesh '{mesh.name}' is too small: {mesh.n_vertices} vertices and {len(mesh.faces)} "
                         f"face(s) after cleaning (sa3df needs at least {MIN_VERTICES} vertices and 2 faces)")


class ResultCache:
    """Whole results by (mesh contents, settings): the last ``max_entries`` in memory (network
    included) and, with ``folder``, base features and embeddings on disk (``<key>.npz``, no network)."""

    def __init__(self, folder: str | os.PathLike | None = None, max_entries: int = 8, limit_mb: float | None = None):
        self.folder = Path(folder) if folder else None
        self.max_entries, self.limit_mb = max_entries, limit_mb
        self._memory: dict[str, PipelineResult] = {}

    def get(self, key: str, extractor: BaseExtractor, meshes: list[Mesh]) -> PipelineResult | None:
        """The cached result for ``meshes`` (in the order they were computed in), or None."""
        if key in self._memory:
            self._memory[key] = self._memory.pop(key)  # most recently used last
            return _with_source(self._memory[key], "memory")
        arrays = self._read(key, meshes)
        if arrays is None:
            return None
        features = [MeshFeatures(m, b, e, extractor.name) for m, (b, e) in zip(meshes, arrays)]
        result = PipelineResult(features, None, extractor.name, extractor.cache_key(), source="disk")
        self._remember(key, result)
        return result

    def put(self, key: str, result: PipelineResult) -> None:
        self._remember(key, result)
        self._write(key, result)

    def _remember(self, key: str, result: PipelineResult) -> None:
        self._memory.pop(key, None)
        self._memory[key] = result
        while len(self._memory) > self.max_entries:
            self._memory.pop(next(iter(self._memory)))

    def _path(self, key: str) -> Path | None:
        return self.folder / f"{key}.npz" if self.folder else None

    def _read(self, key: str, meshes: list[Mesh]) -> list[tuple[np.ndarray, np.ndarray]] | None:
        """The entry's (base, embedding) per mesh, or None when it is missing, damaged, another key's or not
        one finite row per vertex: then it is recomputed."""
        path = self._path(key)
        data = storage.read_npz(path, key=key) if path is not None else None
        if data is None:
            return None
        pairs = [(data.get(f"base{i}"), data.get(f"embedding{i}")) for i in range(len(meshes))]
        for mesh, (base, embedding) in zip(meshes, pairs):
            shape = (mesh.n_vertices, None)
            if not (storage.finite_array(base, shape, np.float16) and storage.finite_array(embedding, shape, np.float16)):
                return None
        return [(base.astype(np.float32), embedding.astype(np.float32)) for base, embedding in pairs]

    def _write(self, key: str, result: PipelineResult) -> None:
        path = self._path(key)
        if path is None:
            return
        arrays = {"key": key}  # features as float16, like archives
        arrays.update({f"base{i}": f.base.astype(np.float16) for i, f in enumerate(result.features)})
        arrays.update({f"embedding{i}": f.embedding.astype(np.float16) for i, f in enumerate(result.features)})
        storage.write_npz(path, arrays)
        storage.prune(path.parent, storage.cache_limit_bytes(self.limit_mb), keep=path)


@dataclass
class PipelineCaches:
    """Everything :func:`compute_surface_features` reuses: base features and anchor pools per mesh,
    whole results per (meshes, settings). Keep one object to reuse them across calls (the worker does)."""

    features: FeatureCache
    anchors: AnchorCache
    results: ResultCache

    @classmethod
    def in_folder(cls, folder: str | os.PathLike | None = None, results_on_disk: bool = False,
                  limit_mb: float | None = None) -> PipelineCaches:
        """Caches under ``folder`` (``features/``, ``anchors/``, ``surface_features/``, each kept under
        ``limit_mb``, see :func:`sa3df.core.storage.cache_limit_bytes`); None: memory only. Results go
        to disk only with ``results_on_disk`` (a disk hit has no network to save)."""
        folder = Path(folder) if folder else None
        sub = (lambda name: folder / name) if folder else (lambda name: None)
        return cls(FeatureCache(sub("features"), limit_mb), AnchorCache(sub("anchors"), limit_mb),
                   ResultCache(sub("surface_features") if results_on_disk else None, limit_mb=limit_mb))

    def set_limit(self, limit_mb: float | None) -> None:
        """A new size limit for every folder (applied at the next write)."""
        for cache in (self.features, self.anchors, self.results):
            cache.limit_mb = limit_mb


@dataclass
class PipelineResult:
    """``features[i]`` (a :class:`~sa3df.core.files.MeshFeatures`) belongs to the i-th mesh given;
    ``network`` (EMA weights) made the embeddings (None without training or checkpoint, or when the
    result came from the disk cache). ``history`` is the training history (empty when a checkpoint was only
    applied). ``source``: "computed", or "memory" / "disk" when a cache served it.
    """

    features: list[MeshFeatures]
    network: SurfaceNetwork | None
    extractor_name: str
    extractor_key: str = ""
    history: list[dict] = field(default_factory=list)
    train_config: dict | None = None
    source: str = "computed"

    @property
    def embeddings(self) -> list[np.ndarray]:
        return [f.embedding for f in self.features]

    def metadata(self) -> dict:
        """What a checkpoint of ``network`` should record so it is reused with the right extractor."""
        return {
            "extractor": self.extractor_name, "extractor_key": self.extractor_key,
            "input_dim": self.network.input_dim, "embedding_dim": self.network.embedding_dim,
            "steps": self.history[-1]["step"] if self.history else None,
            "final_loss": self.history[-1]["loss"] if self.history else None, "train_config": self.train_config,
        }

    def save(self, folder: str | os.PathLike) -> Path:
        """Save ``network`` with :meth:`metadata` as an sa3df checkpoint folder."""
        if self.network is None:
            raise ValueError("These features were made without a network (no training, no checkpoint): nothing to save")
        return save_checkpoint(folder, self.network, self.metadata())


def compute_surface_features(
    meshes: list[Mesh], settings: FeatureSettings | None = None, progress: ProgressFn | None = None,
    caches: PipelineCaches | None = None,
) -> PipelineResult:
    """Surface-aware features of ``meshes`` (each (N_i, E) float32, unit rows, in mesh vertex order).

    With ``settings.steps`` > 0: train a network on these meshes (fine-tuning ``settings.checkpoint``
    when given), then embed them; with 0 steps: embed with the checkpoint, or without one use the
    unit-length base features as the embedding. The meshes are processed in content-hash order (turned
    to face like the first of that order when ``settings.up_axis`` is set), so the result does not
    depend on the order they are listed in; it comes back in the caller's order. ``caches`` default to
    :meth:`PipelineCaches.in_folder` ``(settings.cache_dir)``. Raises ``ValueError`` when the checkpoint
    was made for other base features (width or extractor name).
    """
    if not meshes:
        raise ValueError("compute_surface_features needs at least one mesh")
    settings = settings or FeatureSettings()
    extractor = settings_extractor(settings)
    caches = caches or PipelineCaches.in_folder(settings.cache_dir, limit_mb=settings.cache_limit_mb)
    order = sorted(range(len(meshes)), key=lambda i: meshes[i].content_hash())
    in_order = [meshes[i] for i in order]
    key = result_key(in_order, settings, extractor)
    result = caches.results.get(key, extractor, in_order)
    if result is None:
        result = _compute(in_order, settings, extractor, caches, progress)
        caches.results.put(key, result)
    back = np.argsort(order)  # a cached result's meshes may be other objects (names) with the same contents
    return _with_source(result, result.source, [replace(result.features[k], mesh=m) for k, m in zip(back, meshes)])


def settings_extractor(settings: FeatureSettings) -> BaseExtractor:
    """The extractor the settings name (or hold), with their device, weights folder, downloads and up axis."""
    if isinstance(settings.extractor, BaseExtractor):
        return settings.extractor
    return choose_extractor(
        settings.extractor, device=settings.device, allow_downloads=settings.allow_downloads,
        weights_dir=os.fspath(settings.weights_dir) if settings.weights_dir else None,
        up_axis=settings.up_axis or "y",
    )


def result_key(meshes: list[Mesh], settings: FeatureSettings, extractor: BaseExtractor) -> str:
    """Cache key of a result: the meshes' contents (in order), the extractor actually chosen (with its
    settings), the training settings and the checkpoint's weights file (its path and modification time)."""
    relevant = {"steps": int(settings.steps), "seed": int(settings.seed), "up_axis": settings.up_axis,
                "training": settings.training, "extractor": extractor.cache_key(),
                "proxy_vertices": settings.proxy_vertices or 0}
    if settings.checkpoint:
        checkpoint = Path(settings.checkpoint)  # a folder, or a reference .pt file
        weights = checkpoint if checkpoint.is_file() else checkpoint / "model.safetensors"
        relevant["checkpoint"] = [os.fspath(settings.checkpoint), weights.stat().st_mtime if weights.exists() else None]
    text = json.dumps([[m.content_hash() for m in meshes], relevant], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _compute(meshes: list[Mesh], settings: FeatureSettings, extractor: BaseExtractor, caches: PipelineCaches,
             progress: ProgressFn | None) -> PipelineResult:
    """1. face alike, 2. proxies of large meshes, 3. base features, 4. load / train the network, 5. embed,
    6. carry proxy features to every vertex."""
    featured = face_like_first(meshes, settings.up_axis) if settings.up_axis else list(meshes)
    proxies = [build_proxy(m, settings.proxy_vertices) if needs_proxy(m, settings.proxy_vertices) else None
               for m in featured]
    featured = [p.mesh if p is not None else m for m, p in zip(featured, proxies)]  # what is computed on
    base = []
    for i, mesh in enumerate(featured):
        stage = sub_progress(progress, 0.3 * i / len(meshes), 0.3 * (i + 1) / len(meshes))
        base.append(caches.features.get(mesh, extractor, progress=stage))

    network, history, used_config = None, [], None
    if settings.checkpoint:
        network = _load_matching(settings.checkpoint, extractor, base[0].shape[1])
    if settings.steps > 0:
        used_config = TrainConfig(**{**settings.training, "steps": int(settings.steps), "seed": int(settings.seed),
                                     "device": settings.device})
        samples = [TrainingSample(m, f) for m, f in zip(featured, base)]
        trained = train_surface_network(
            samples, used_config, anchor_cache=caches.anchors, progress=sub_progress(progress, 0.3, 0.95),
            init_network=network,
        )
        network, history = trained.network, trained.history

    report(progress, 0.95, "embedding")
    embeddings = [embed(network, f) if network is not None else _unit_rows(f) for f in base]
    base, embeddings = zip(*[_on_original(p, b, e) for p, b, e in zip(proxies, base, embeddings)])
    for mesh, embedding in zip(meshes, embeddings):
        if not np.isfinite(embedding).all():  # never hand on (or save) an all-NaN result
            raise ValueError(f"The surface-aware embedding of mesh '{mesh.name}' is not finite; training "
                             "diverged or the network is damaged (try fewer steps or another seed)")
    report(progress, 1.0, "done")
    return PipelineResult(
        features=[MeshFeatures(m, b, e, extractor.name) for m, b, e in zip(meshes, base, embeddings)],
        network=network, extractor_name=extractor.name, extractor_key=extractor.cache_key(), history=history,
        train_config=used_config.to_dict() if used_config else None,
    )


def _on_original(proxy: Proxy | None, base: np.ndarray, embedding: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(base, embedding) per vertex of the caller's mesh: as computed, or carried over from its proxy."""
    if proxy is None:
        return base, embedding
    return proxy.carry(base), proxy.carry(embedding, unit_rows=True)


def _unit_rows(features: np.ndarray) -> np.ndarray:
    """No network: the base features, each row scaled to unit length, stand in for the embedding."""
    features = np.asarray(features, dtype=np.float32)
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


def _with_source(result: PipelineResult, source: str, features: list[MeshFeatures] | None = None) -> PipelineResult:
    return PipelineResult(features if features is not None else list(result.features), result.network,
                          result.extractor_name, result.extractor_key, result.history, result.train_config, source)


def _load_matching(folder, extractor: BaseExtractor, dim: int) -> SurfaceNetwork:
    network, metadata = load_checkpoint(folder)
    if network.input_dim != dim:
        raise ValueError(
            f"Checkpoint '{folder}' was trained on {network.input_dim}-d base features, but extractor "
            f"'{extractor.name}' gives {dim}-d features; use the extractor it was trained with "
            f"('{metadata.get('extractor', 'unknown')}')"
        )
    trained_with = metadata.get("extractor")
    if trained_with and trained_with != extractor.name:
        raise ValueError(
            f"Checkpoint '{folder}' was trained on '{trained_with}' features, not '{extractor.name}' features"
        )
    return network
