"""Mesh cleaning keeps the caller's vertices; geodesic pools are right on shapes with known answers."""

import numpy as np
import pytest
import trimesh

from sa3df.core import geodesics, mesh


def test_quads_are_triangulated_and_order_kept():
    box = trimesh.creation.box()
    quads = np.array([[0, 1, 3, 2], [4, 6, 7, 5]])  # two faces of the cube as quads
    m = mesh.from_arrays(box.vertices, quads, name="box")
    assert m.faces.shape == (4, 3) and m.report.polygons_triangulated == 2
    np.testing.assert_array_equal(m.vertices, box.vertices)


def test_bad_input_is_named():
    v = np.zeros((4, 3))
    with pytest.raises(ValueError, match="no faces"):
        mesh.from_arrays(v, np.zeros((0, 3), int), name="Chair")
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        mesh.from_arrays(np.zeros((4, 2)), [[0, 1, 2]])
    with pytest.raises(ValueError, match="face indices"):
        mesh.from_arrays(v, [[0, 1, 7]])
    with pytest.raises(ValueError, match="empty"):
        mesh.from_arrays(np.zeros((0, 3)), [[0, 1, 2]])


def test_nonfinite_and_degenerate_are_dropped_and_mapped_back():
    sphere = trimesh.creation.icosphere(subdivisions=2)
    v = sphere.vertices.copy()
    v[5] = np.nan
    faces = np.vstack([sphere.faces, sphere.faces[:3], [[0, 0, 1]]])  # duplicates + a degenerate
    m = mesh.from_arrays(v, faces)
    assert m.report.nonfinite_vertices == 1 and m.report.duplicate_faces == 3
    assert m.report.degenerate_faces == 1 and m.n_vertices == len(v) - 1
    back = m.to_input(np.arange(m.n_vertices, dtype=float))
    assert back.shape == (len(v),) and np.isnan(back[5]) and back[6] == 5


def test_geodesic_on_sphere_matches_great_circle():
    sphere = trimesh.creation.icosphere(subdivisions=4)
    m = mesh.from_arrays(sphere.vertices, sphere.faces)
    d = geodesics.GeodesicSolver(m).distances_from(0)
    exact = np.arccos(np.clip(sphere.vertices @ sphere.vertices[0], -1, 1))
    assert np.abs(d - exact).mean() < 0.02


def test_anchor_pool_spreads_and_handles_components(tmp_path):
    a = trimesh.creation.icosphere(subdivisions=2)
    b = a.copy()
    b.apply_translation([5, 0, 0])
    both = trimesh.util.concatenate([a, b])
    m = mesh.from_arrays(both.vertices, both.faces)
    pool = geodesics.farthest_point_anchors(m, 6, seed=1)
    comps = m.components()[pool.anchors]
    assert set(comps[:2]) == {0, 1}, "each component gets an anchor first"
    assert pool.distances.shape == (m.n_vertices, 6) and pool.distances.max() == 1.0
    other = m.components() != m.components()[pool.anchors[0]]
    assert np.all(pool.distances[other, 0] == 1.0), "across components the distance is 1"
    cache = geodesics.AnchorCache(tmp_path)
    first = cache.get(m, 6, seed=1)
    again = geodesics.AnchorCache(tmp_path).get(m, 6, seed=1)  # fresh object: read from disk
    np.testing.assert_array_equal(first.anchors, again.anchors)
    assert len(list(tmp_path.glob("anchors_*.npz"))) == 1


def test_obj_reader_keeps_file_vertices(data_dir):
    m = mesh.load(data_dir / "meshes/polyhaven/horse_statue_01_1k.obj")
    assert m.n_vertices == 11239, "vertex count of the file's v records (no UV-seam splitting)"
    assert len(np.unique(m.components())) <= 3


def test_seam_split_vertices_are_welded_and_results_shared():
    sphere = trimesh.creation.icosphere(subdivisions=2)
    flat = sphere.vertices[sphere.faces].reshape(-1, 3)  # flat-shaded export: every face owns its corners
    faces = np.arange(len(flat)).reshape(-1, 3)
    m = mesh.from_arrays(flat, faces)
    assert m.n_vertices == len(sphere.vertices) and m.report.welded_vertices == len(flat) - len(sphere.vertices)
    assert len(np.unique(m.components())) == 1, "welding makes the surface one piece again"
    per_vertex = m.to_input(m.vertices[:, 0])
    np.testing.assert_array_equal(per_vertex, flat[:, 0])
    assert mesh.from_arrays(flat, faces, weld=False).n_vertices == len(flat)


@pytest.mark.parametrize("name", ["khronos_fox.glb", "quaternius_fox.glb", "quaternius_wolf.glb"])
def test_seam_split_gltf_characters_keep_every_face_and_stay_closed(data_dir, name):
    """glTF splits vertices at UV seams; welding them must not make valid faces look degenerate
    (the area test once read input rows with welded indices: the Khronos fox lost 32 of 576 faces)."""
    path = data_dir / "quadrupeds" / name
    scene = trimesh.load(path, process=False)
    file_faces = sum(len(g.faces) for g in scene.geometry.values())
    m = mesh.load(path)
    assert m.report.degenerate_faces == 0 and m.report.welded_vertices > 0
    assert len(m.faces) == file_faces - m.report.duplicate_faces
    edges = np.sort(m.faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    assert (np.unique(edges, axis=0, return_counts=True)[1] == 1).sum() == 0, "no holes along the seams"
    if name == "khronos_fox.glb":
        assert len(m.faces) == 576


def test_weld_does_not_hide_a_truly_degenerate_face():
    """A sliver whose corners are distinct but collinear is still dropped after welding."""
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0], [2, 0, 0]], dtype=float)  # vertex 3 = vertex 0
    m = mesh.from_arrays(v, [[0, 1, 2], [3, 1, 4]])
    assert m.report.welded_vertices == 1 and m.report.degenerate_faces == 1 and len(m.faces) == 1
