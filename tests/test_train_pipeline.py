"""The feature pipeline: cached base features, train / embed / fine-tune, and checkpoint mismatches."""

import numpy as np
import pytest
import trimesh

from sa3df.core import mesh
from sa3df.features.extractors import BaseExtractor
from sa3df.features.network import NetworkConfig, SurfaceNetwork
from sa3df.features.checkpoint import save_checkpoint
from sa3df.features.pipeline import FeatureCache, compute_surface_features
from sa3df.features.settings import FeatureSettings


class CountingExtractor(BaseExtractor):
    """Position + normal + a few fixed random projections; counts its calls."""

    name = "counting"
    dim = 12

    def __init__(self):
        super().__init__("cpu")
        self.calls = 0

    def extract(self, m, progress=None):
        self.calls += 1
        v = m.normalized().vertices
        extra = np.sin(v @ np.random.default_rng(0).normal(size=(3, 6)) * 3)
        return np.concatenate([v, m.vertex_normals(), extra], axis=1).astype(np.float32)


def _meshes():
    capsule = trimesh.creation.capsule(height=1.0, radius=0.4, count=[12, 12])
    box = trimesh.creation.box(extents=[1.0, 0.6, 0.3]).subdivide().subdivide()
    return [mesh.from_arrays(capsule.vertices, capsule.faces, name="capsule"),
            mesh.from_arrays(box.vertices, box.faces, name="box")]


def _fast(**overrides):
    """Short training on a CountingExtractor; ``steps=0`` (with a checkpoint): embed only."""
    training = dict(cpu_threads=1, anchor_pool_size=16, anchors_per_step=8, vertices_per_step=64)
    return FeatureSettings(**{**dict(extractor=CountingExtractor(), steps=30, device="cpu", training=training),
                              **overrides})


def test_feature_cache_hits_memory_then_disk(tmp_path):
    m = _meshes()[0]
    extractor = CountingExtractor()
    cache = FeatureCache(tmp_path)
    first = cache.get(m, extractor)
    assert cache.get(m, extractor) is first and extractor.calls == 1
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1 and files[0].name.startswith(m.content_hash())
    again = FeatureCache(tmp_path).get(m, extractor)  # a new process: read from disk
    assert extractor.calls == 1
    np.testing.assert_array_equal(again, first)
    files[0].write_bytes(b"broken")  # a corrupt entry is recomputed, never trusted
    np.testing.assert_array_equal(FeatureCache(tmp_path).get(m, extractor), first)
    assert extractor.calls == 2


def test_train_then_embed_only_with_the_saved_network(tmp_path):
    meshes = _meshes()
    result = compute_surface_features(meshes, _fast(cache_dir=tmp_path / "c"))
    assert [f.base.shape for f in result.features] == [(m.n_vertices, 12) for m in meshes]
    assert [f.embedding.shape for f in result.features] == [(m.n_vertices, 128) for m in meshes]
    assert len(result.history) == 30 and result.extractor_name == "counting"
    for f in result.features:
        assert f.embedding.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(f.embedding, axis=1), 1.0, atol=1e-5)
    assert (tmp_path / "c" / "anchors").is_dir() and (tmp_path / "c" / "features").is_dir()

    result.save(tmp_path / "net")
    again = compute_surface_features(meshes, _fast(steps=0, checkpoint=tmp_path / "net"))
    assert again.history == []  # embed only
    for old, new in zip(result.features, again.features):
        np.testing.assert_allclose(new.embedding, old.embedding, atol=1e-6)

    tuned = compute_surface_features(meshes[:1], _fast(steps=5, checkpoint=tmp_path / "net"))
    assert len(tuned.history) == 5
    assert not np.allclose(tuned.features[0].embedding, result.features[0].embedding, atol=1e-4)


def test_checkpoint_for_other_features_is_refused(tmp_path):
    save_checkpoint(tmp_path / "wide", SurfaceNetwork(NetworkConfig.for_input_dim(2048)), {"extractor": "diff3f"})
    with pytest.raises(ValueError, match=r"2048-d .*'counting' gives 12-d"):
        compute_surface_features(_meshes()[:1], _fast(steps=0, checkpoint=tmp_path / "wide"))
    save_checkpoint(tmp_path / "other", SurfaceNetwork(NetworkConfig.for_input_dim(12)), {"extractor": "dino"})
    with pytest.raises(ValueError, match="trained on 'dino' features"):
        compute_surface_features(_meshes()[:1], _fast(steps=0, checkpoint=tmp_path / "other"))
