"""Large meshes are computed on a simplified proxy; features come back per original vertex."""

import numpy as np
import pytest
import trimesh

from sa3df.core import mesh
from sa3df.features.extractors import BaseExtractor
from sa3df.features.pipeline import compute_surface_features
from sa3df.features.proxy import build_proxy, needs_proxy
from sa3df.features.settings import FeatureSettings


class SizeRecordingExtractor(BaseExtractor):
    """Normalised position + normal; records the vertex count of every mesh it is given."""

    name = "size-recording"
    dim = 6

    def __init__(self):
        super().__init__("cpu")
        self.sizes = []

    def extract(self, m, progress=None):
        self.sizes.append(m.n_vertices)
        return np.concatenate([m.normalized().vertices, m.vertex_normals()], axis=1).astype(np.float32)


@pytest.fixture(scope="module")
def bumpy_sphere():
    """A 10,242-vertex sphere with bumps (so simplification has something to keep)."""
    s = trimesh.creation.icosphere(subdivisions=5)
    v = s.vertices * (1 + 0.15 * np.sin(4 * s.vertices[:, [0]]) * np.cos(3 * s.vertices[:, [1]]))
    return mesh.from_arrays(v, s.faces, name="bumpy")


def test_proxy_has_the_asked_size_and_lies_on_the_surface(bumpy_sphere):
    proxy = build_proxy(bumpy_sphere, 1500)
    assert 1000 <= proxy.mesh.n_vertices <= 1600
    assert proxy.n_original == bumpy_sphere.n_vertices
    assert (proxy.weights >= 0).all() and np.allclose(proxy.weights.sum(axis=1), 1, atol=1e-5)
    # Interpolating the proxy's own positions lands next to every original vertex.
    miss = np.linalg.norm(proxy.carry(proxy.mesh.vertices) - bumpy_sphere.vertices, axis=1)
    assert miss.mean() < 0.005 and miss.max() < 0.05  # the sphere's radius is about 1


def test_carried_values_follow_a_smooth_function(bumpy_sphere):
    proxy = build_proxy(bumpy_sphere, 1500)
    def smooth(v):
        return np.stack([np.sin(2 * v[:, 0]), v[:, 1] * v[:, 2]], axis=1)

    carried = proxy.carry(smooth(proxy.mesh.vertices))
    assert carried.shape == (bumpy_sphere.n_vertices, 2)
    assert np.abs(carried - smooth(bumpy_sphere.vertices)).mean() < 0.01
    units = proxy.carry(proxy.mesh.vertex_normals(), unit_rows=True)
    assert np.allclose(np.linalg.norm(units, axis=1), 1, atol=1e-5)
    assert (units * bumpy_sphere.vertex_normals()).sum(axis=1).mean() > 0.98


def test_very_large_meshes_are_grid_clustered_first():
    s = trimesh.creation.icosphere(subdivisions=7)  # 163,842 vertices: > 2 x 4 x 5,000
    big = mesh.from_arrays(s.vertices, s.faces, name="big")
    proxy = build_proxy(big, 5000)
    assert 3500 <= proxy.mesh.n_vertices <= 6000
    assert np.abs(np.linalg.norm(proxy.carry(proxy.mesh.vertices), axis=1) - 1).max() < 0.02


def test_pipeline_computes_on_the_proxy_and_returns_every_vertex(bumpy_sphere):
    capsule = trimesh.creation.capsule(height=1.0, radius=0.4, count=[12, 12])
    small = mesh.from_arrays(capsule.vertices, capsule.faces, name="capsule")
    assert needs_proxy(bumpy_sphere, 1500) and not needs_proxy(small, 1500)
    extractor = SizeRecordingExtractor()
    training = dict(cpu_threads=1, anchor_pool_size=16, anchors_per_step=8, vertices_per_step=64)
    settings = FeatureSettings(extractor=extractor, steps=20, device="cpu", proxy_vertices=1500, training=training)
    result = compute_surface_features([bumpy_sphere, small], settings)
    assert sorted(extractor.sizes)[0] == small.n_vertices and sorted(extractor.sizes)[1] <= 1600
    big, tiny = result.features
    assert big.embedding.shape == (bumpy_sphere.n_vertices, 128) and big.base.shape == (bumpy_sphere.n_vertices, 6)
    assert tiny.embedding.shape == (small.n_vertices, 128)
    assert np.allclose(np.linalg.norm(big.embedding, axis=1), 1, atol=1e-5)
    # Neighbouring vertices get neighbouring features (interpolated, not blocky copies of one proxy vertex).
    a, b = bumpy_sphere.faces[:, 0], bumpy_sphere.faces[:, 1]
    assert (big.embedding[a] * big.embedding[b]).sum(axis=1).mean() > 0.99
    assert len(np.unique(big.embedding.round(5), axis=0)) > 0.9 * bumpy_sphere.n_vertices


def test_a_too_small_proxy_is_refused(bumpy_sphere):
    with pytest.raises(ValueError, match="at least 100"):
        build_proxy(bumpy_sphere, 50)
