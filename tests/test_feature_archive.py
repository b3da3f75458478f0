"""Feature archives: float16 on disk, float32 in memory, and matches that do not change."""

import numpy as np
import trimesh

from sa3df.apps.match import nearest_neighbors
from sa3df.core import files, mesh


def _smooth_unit_features(m, dim=128, seed=0):
    """Unit rows that vary smoothly over the surface, like trained embeddings do."""
    projection = np.random.default_rng(seed).normal(size=(3, dim))
    f = np.sin(m.normalized().vertices @ projection * 2.0)
    return (f / np.linalg.norm(f, axis=1, keepdims=True)).astype(np.float32)


def test_archive_stores_half_precision_and_matches_agree(tmp_path):
    s = trimesh.creation.icosphere(subdivisions=4)
    a = mesh.from_arrays(s.vertices, s.faces, name="a")
    b = mesh.from_arrays(s.vertices * [1.1, 0.9, 1.0], s.faces, name="b")
    fa, fb = _smooth_unit_features(a), _smooth_unit_features(b)
    paths = [files.save_features(tmp_path / f"{m.name}.npz", files.MeshFeatures(m, f[:, :20], f, "test"))
             for m, f in ((a, fa), (b, fb))]
    with np.load(paths[0]) as raw:
        assert raw["embedding"].dtype == np.float16 and raw["base"].dtype == np.float16
    la, lb = (files.load_features(p) for p in paths)
    assert la.embedding.dtype == np.float32 and la.base.dtype == np.float32
    assert np.abs(la.embedding - fa).max() < 1e-3
    exact, _ = nearest_neighbors(fa, fb)
    stored, _ = nearest_neighbors(la.embedding, lb.embedding)
    moved = exact != stored
    assert moved.mean() < 0.01
    # where the match moved, it moved to a vertex as similar as the exact one, up to float16 rounding
    assert np.abs((fa[moved] * fb[exact[moved]]).sum(1) - (fa[moved] * fb[stored[moved]]).sum(1)).max() < 2e-3
