"""From meshes to surface-aware features in one call: base features (cached), train or load, embed.

This is what the CLI and the Blender worker call::

    result = compute_surface_features([mesh_a, mesh_b])          # test-time training on both
    result.features[0].embedding                                  # (N_a, E) unit rows
    result.save("my_network")                                     # reuse later via checkpoint=
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sa3df.features.checkpoint import load_checkpoint, save_checkpoint
from sa3df.features.extractors import BaseExtractor, create_extractor
from sa3df.core.geodesics import AnchorCache
from sa3df.core.mesh import Mesh
from sa3df.features.network import SurfaceNetwork
from sa3df.features.proxy import DEFAULT_PROXY_VERTICES, Proxy, build_proxy, needs_proxy
from sa3df.core.orient import face_like_first
from sa3df.core.progress import ProgressFn, report, sub_progress
from sa3df.features.train import TrainConfig, TrainingSample, embed, train_surface_network


class FeatureCache:
    """Base features per (mesh content, extractor settings), in memory and, with ``folder``, on disk.

    Files are ``<folder>/<mesh hash>_<extractor key>.npy`` (float32), written atomically so a
    crash never leaves a truncated entry that a later run would trust.
    """

    def __init__(self, folder: str | os.PathLike | None = None):
        self.folder = Path(folder) if folder else None
        self._memory: dict[str, np.ndarray] = {}

    @staticmethod
    def key(mesh: Mesh, extractor: BaseExtractor) -> str:
        return f"{mesh.content_hash()}_{re.sub(r'[^A-Za-z0-9_.-]+', '-', extractor.cache_key())}"

    def get(self, mesh: Mesh, extractor: BaseExtractor, progress: ProgressFn | None = None) -> np.ndarray:
        """(N, D) float32 base features of ``mesh``: from memory, disk, or ``extractor.extract``."""
        key = self.key(mesh, extractor)
        if key in self._memory:
            return self._memory[key]
        path = self.folder / f"{key}.npy" if self.folder else None
        features = self._read(path, mesh) if path is not None and path.exists() else None
        if features is None:
            features = np.asarray(extractor.extract(mesh, progress=progress), dtype=np.float32)
            if features.shape[0] != mesh.n_vertices or features.ndim != 2:
                raise ValueError(
                    f"Extractor '{extractor.name}' returned shape {features.shape} for mesh '{mesh.name}' "
                    f"with {mesh.n_vertices} vertices"
                )
            if path is not None:
                self._write(path, features)
        self._memory[key] = features
        return features

    @staticmethod
    def _read(path: Path, mesh: Mesh) -> np.ndarray | None:
        try:
            features = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            return None  # unreadable entry: recompute and overwrite it
        return features if features.ndim == 2 and len(features) == mesh.n_vertices else None

    @staticmethod
    def _write(path: Path, features: np.ndarray) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as handle:
            np.save(handle, features, allow_pickle=False)
        os.replace(tmp, path)


@dataclass
class SurfaceFeatures:
    """Per-vertex features of one mesh: ``base`` (N, D) float32 and ``embedding`` (N, E) float32, unit rows."""

    base: np.ndarray
    embedding: np.ndarray


@dataclass
class PipelineResult:
    """``features[i]`` belongs to ``meshes[i]``; ``network`` (EMA weights) made the embeddings.

    ``history`` is the training history (empty when a checkpoint was only applied).
    """

    features: list[SurfaceFeatures]
    network: SurfaceNetwork
    extractor_name: str
    extractor_key: str = ""
    history: list[dict] = field(default_factory=list)
    train_config: dict | None = None

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
        return save_checkpoint(folder, self.network, self.metadata())


def compute_surface_features(
    meshes: list[Mesh], extractor: str | BaseExtractor = "geometric", checkpoint: str | os.PathLike | None = None,
    train_config: TrainConfig | None = None, cache_dir: str | os.PathLike | None = None,
    progress: ProgressFn | None = None, feature_cache: FeatureCache | None = None,
    anchor_cache: AnchorCache | None = None, face_alike_up: str | None = None,
    proxy_vertices: int | None = DEFAULT_PROXY_VERTICES,
) -> PipelineResult:
    """Surface-aware features of ``meshes`` (each (N_i, E) float32, unit rows, in mesh vertex order).

    - no ``checkpoint``: train a network on these meshes (``train_config``, default
      :class:`TrainConfig`), then embed them;
    - ``checkpoint`` folder and no ``train_config``: load it and embed only;
    - both: fine-tune the checkpoint on these meshes, then embed.

    ``extractor`` is a registered name or an instance. ``cache_dir`` keeps base features and
    geodesic anchor pools on disk (``features/`` and ``anchors/``); explicit ``feature_cache`` /
    ``anchor_cache`` objects take precedence. ``face_alike_up`` ("x", "y" or "z"): before base
    features are computed, turn every mesh after the first about that up axis to face like the first
    (:func:`sa3df.core.orient.face_like_first`), so extrinsic cues agree between meshes that face different
    ways. ``proxy_vertices``: a mesh with clearly more vertices is computed on a simplified proxy of about
    that size (base features, anchors, training, embedding) and the features are interpolated onto its
    own vertices (:mod:`sa3df.features.proxy`); None or 0 computes at full resolution. Raises
    ``ValueError`` when the checkpoint was made for other base features (width or extractor name).
    """
    if not meshes:
        raise ValueError("compute_surface_features needs at least one mesh")
    extractor = create_extractor(extractor) if isinstance(extractor, str) else extractor
    cache_dir = Path(cache_dir) if cache_dir else None
    feature_cache = feature_cache or FeatureCache(cache_dir / "features" if cache_dir else None)
    anchor_cache = anchor_cache or AnchorCache(cache_dir / "anchors" if cache_dir else None)

    if face_alike_up:
        meshes = face_like_first(meshes, face_alike_up)
    proxies = [build_proxy(m, proxy_vertices) if needs_proxy(m, proxy_vertices) else None for m in meshes]
    meshes = [p.mesh if p is not None else m for m, p in zip(meshes, proxies)]  # what is computed on
    base = []
    for i, mesh in enumerate(meshes):
        stage = sub_progress(progress, 0.3 * i / len(meshes), 0.3 * (i + 1) / len(meshes))
        base.append(feature_cache.get(mesh, extractor, progress=stage))

    network, history, used_config = None, [], None
    if checkpoint is not None:
        network = _load_matching(checkpoint, extractor, base[0].shape[1])
    if checkpoint is None or train_config is not None:
        used_config = train_config or TrainConfig()
        samples = [TrainingSample(m, f) for m, f in zip(meshes, base)]
        trained = train_surface_network(
            samples, used_config, anchor_cache=anchor_cache, progress=sub_progress(progress, 0.3, 0.95),
            init_network=network,
        )
        network, history = trained.network, trained.history

    report(progress, 0.95, "embedding")
    features = [_on_original(p, f, embed(network, f)) for p, f in zip(proxies, base)]
    report(progress, 1.0, "done")
    return PipelineResult(
        features=features, network=network, extractor_name=extractor.name, extractor_key=extractor.cache_key(),
        history=history, train_config=used_config.to_dict() if used_config else None,
    )


def _on_original(proxy: Proxy | None, base: np.ndarray, embedding: np.ndarray) -> SurfaceFeatures:
    """Features per vertex of the caller's mesh: as computed, or carried over from its proxy."""
    if proxy is None:
        return SurfaceFeatures(base=base, embedding=embedding)
    return SurfaceFeatures(base=proxy.carry(base), embedding=proxy.carry(embedding, unit_rows=True))


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
