"""Evaluation: geodesic errors on shapes with known geodesics, curves, mirrored ground truth, flips."""

import numpy as np
import pytest
import trimesh

from sa3df.apps import evaluate
from sa3df.core import mesh


def _sphere(subdivisions=4, radius=1.0, offset=(0, 0, 0)):
    s = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return s.vertices + np.asarray(offset), s.faces


def _great_circle(v, a, b):
    u = v[a] / np.linalg.norm(v[a], axis=-1, keepdims=True)
    w = v[b] / np.linalg.norm(v[b], axis=-1, keepdims=True)
    return np.arccos(np.clip(np.sum(u * w, axis=-1), -1, 1))


def test_sphere_errors_match_great_circle_distances():
    v, f = _sphere()
    m = mesh.from_arrays(v, f, name="sphere")
    rng = np.random.default_rng(0)
    true = rng.integers(0, len(v), 40)
    predicted = rng.integers(0, len(v), 40)
    predicted[:5] = true[:5]
    errors = evaluate.geodesic_errors(m, predicted, true)
    expected = _great_circle(v, true, predicted) / np.sqrt(m.surface_area())
    assert errors.shape == (40,) and np.all(errors[:5] == 0)
    np.testing.assert_allclose(errors, expected, atol=0.03)  # heat method ≈ 3% of √area
    antipode = int(np.argmin(v @ v[0]))
    far = evaluate.geodesic_errors(m, np.array([antipode]), np.array([0]))
    assert far[0] == pytest.approx(np.pi / np.sqrt(4 * np.pi), rel=0.05)


def test_flat_grid_geodesics_are_euclidean():
    n = 21
    x, y = np.meshgrid(np.linspace(0, 1, n), np.linspace(0, 1, n))
    v = np.c_[x.ravel(), y.ravel(), np.zeros(n * n)]
    idx = np.arange(n * n).reshape(n, n)
    quads = np.c_[idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel(), idx[1:, :-1].ravel()]
    m = mesh.from_arrays(v, quads, name="square")
    assert m.surface_area() == pytest.approx(1.0)
    true, predicted = np.array([0, 0, 220, 10]), np.array([20, 440, 230, 430])
    errors = evaluate.geodesic_errors(m, predicted, true)
    expected = np.linalg.norm(v[true] - v[predicted], axis=1)
    np.testing.assert_allclose(errors, expected, rtol=0.08)  # heat method smooths a little


def test_other_component_counts_as_the_diameter():
    a, fa = _sphere(3)
    b, fb = _sphere(3, offset=(5, 0, 0))
    m = mesh.from_arrays(np.vstack([a, b]), np.vstack([fa, fb + len(a)]), name="two spheres")
    errors = evaluate.geodesic_errors(m, np.array([len(a) + 3, 7]), np.array([0, 7]))
    assert errors[1] == 0
    assert errors[0] == pytest.approx(np.pi / np.sqrt(m.surface_area()), rel=0.05)


def test_accuracy_curve_and_auc_by_hand():
    t, acc = evaluate.accuracy_curve([0.0, 0.1, 0.2, 1.0], thresholds=[0.0, 0.1, 0.15, 0.2])
    np.testing.assert_allclose(acc, [0.25, 0.5, 0.5, 0.75])
    assert evaluate.auc([0, 1], [1, 1]) == 1.0
    assert evaluate.auc([0, 0.5, 1], [0, 1, 1]) == pytest.approx(0.75)
    t, acc = evaluate.accuracy_curve(np.zeros(5))
    assert t[-1] == 0.25 and evaluate.auc(t, acc) == 1.0
    with pytest.raises(ValueError, match="at least one"):
        evaluate.accuracy_curve([])


def _x_symmetric_blob():
    """An ellipsoid bent in y and z, so only the x = 0 plane is a mirror plane."""
    v, f = _sphere(3)
    v = v * [1.0, 1.6, 2.4]
    v[:, 1] += 0.5 * v[:, 2] ** 2 * 0.3 + 0.4 * v[:, 2]
    v[:, 2] += 0.3 * v[:, 1] ** 2
    return v + [3.0, -1.0, 0.5], f


def test_mirrored_ground_truth_on_a_shape_with_one_mirror_plane():
    v, f = _x_symmetric_blob()
    axis, scores = evaluate.symmetry_axis(v)
    assert axis == 0 and scores[0] < 1e-9 and scores[1:].min() > 0.01
    g = evaluate.mirrored_ground_truth(v, f)
    np.testing.assert_array_equal(g[g], np.arange(len(v)))
    np.testing.assert_allclose(v[g], v * [-1, 1, 1] + [6.0, 0, 0], atol=1e-9)
    with pytest.raises(ValueError, match="axis"):
        evaluate.mirrored_ground_truth(v, axis=3)


def test_flip_rate_counts_mirror_swaps_away_from_the_plane():
    v, f = _x_symmetric_blob()
    m = mesh.from_arrays(v, f, name="blob")
    g = evaluate.mirrored_ground_truth(v)
    true = np.arange(0, len(v), 7)
    assert evaluate.flip_rate(m, true, true, g[true]) == 0.0
    assert evaluate.flip_rate(m, g[true], true, g[true]) == 1.0
    half = true.copy()
    half[::2] = g[true][::2]
    scores = evaluate.evaluate_correspondence(m, half, true, g[true])
    assert 0.35 < scores["flip_rate"] < 0.65 and scores["flip_count"] < len(true)  # plane points left out
    sampled = evaluate.evaluate_correspondence(m, half, true, g[true], max_points=20, seed=1)
    assert sampled["count"] == 20 and 0.0 <= sampled["flip_rate"] <= 1.0
    calls = []
    evaluate.evaluate_correspondence(m, half, true, g[true], progress=lambda f, msg: calls.append(f))
    assert calls[-1] == 1.0 and calls == sorted(calls)
    perfect = evaluate.evaluate_correspondence(m, true, true)
    assert perfect["mean_error"] == 0 and perfect["auc"] == 1.0 and perfect["acc@0.01"] == 1.0
    assert "flip_rate" not in perfect and perfect["count"] == len(true)


def test_bad_ids_are_named():
    v, f = _sphere(1)
    m = mesh.from_arrays(v, f, name="ball")
    with pytest.raises(ValueError, match="ball"):
        evaluate.geodesic_errors(m, np.array([0, 999]), np.array([0, 1]))
    with pytest.raises(ValueError, match="length"):
        evaluate.geodesic_errors(m, np.array([0]), np.array([0, 1]))


def test_real_fox_mirror_is_an_involution_that_swaps_sides(data_dir):
    fox = mesh.load(data_dir / "quadrupeds" / "quaternius_fox.glb")
    v = fox.vertices
    axis, _ = evaluate.symmetry_axis(v)
    g = evaluate.mirrored_ground_truth(v, fox.faces)
    diagonal = np.linalg.norm(np.ptp(v, axis=0))
    # Positions, not ids: the file splits vertices at UV seams, so coincident duplicates exist.
    back_home = np.linalg.norm(v[g[g]] - v, axis=1) < 1e-6 * diagonal
    assert axis == 0 and back_home.mean() > 0.98
    centre = (v[:, axis].min() + v[:, axis].max()) / 2
    side = np.abs(v[:, axis] - centre) > 0.1 * np.ptp(v[:, axis])
    assert side.sum() > 500
    assert np.mean(np.sign(v[g, axis] - centre)[side] != np.sign(v[side, axis] - centre)) > 0.99
    rng = np.random.default_rng(0)
    sample = rng.choice(np.flatnonzero(side), 60, replace=False)
    scores = evaluate.evaluate_correspondence(fox, g[sample], sample, g[sample])
    assert scores["flip_rate"] == 1.0 and scores["mean_error"] > 0.05


def test_seam_split_copies_are_welded_for_geodesics():
    v, f = _sphere(3)
    m = mesh.from_arrays(v, f, name="sphere")
    # Flat-shaded export: every face gets its own three vertices (the surface falls apart into faces).
    split = mesh.from_arrays(v[f].reshape(-1, 3), np.arange(3 * len(f)).reshape(-1, 3), name="split", weld=False)
    welded, key = evaluate.weld_coincident(split)
    assert welded.n_vertices == len(v) and len(np.unique(split.components())) == len(f)
    np.testing.assert_array_equal(v[f].reshape(-1, 3), welded.vertices[key])
    copies = np.flatnonzero(f.ravel() == 0)  # every split copy of vertex 0
    antipode = int(np.argmin(v @ v[0]))
    far_copy = np.flatnonzero(f.ravel() == antipode)[0]
    errors = evaluate.geodesic_errors(split, np.r_[copies, far_copy], np.full(len(copies) + 1, copies[0]))
    np.testing.assert_allclose(errors[:-1], 0)
    expected = evaluate.geodesic_errors(m, np.array([antipode]), np.array([0]))[0]
    assert errors[-1] == pytest.approx(expected, rel=1e-6)


# Regions: 0 body (central), 1 arm.L, 2 arm.R.
MIRROR = np.array([0, 2, 1])


def test_region_scores_count_own_region_hits_and_left_right_swaps():
    source = np.array([0, 0, 1, 1, 2, 2])
    target = np.array([0, 1, 1, 2, 2, -1])
    # target 0 -> body (hit), 1 -> arm.L (hit), 2 -> arm.R (swap), 3 -> arm.R (hit), 4 -> body (miss)
    t2s = np.array([1, 2, 4, 5, 0, 3])
    scores = evaluate.region_scores(t2s, source, target, MIRROR)
    assert scores["count"] == 5 and scores["sided_count"] == 4  # the unlabelled vertex does not count
    assert scores["accuracy"] == pytest.approx(3 / 5)
    assert scores["swap_rate"] == pytest.approx(1 / 4)


def test_region_scores_skip_regions_the_source_lacks_and_reject_bad_maps():
    source, target = np.array([0, 0, 1]), np.array([0, 2, 1])  # the source has no arm.R
    scores = evaluate.region_scores(np.array([0, 2, 2]), source, target, MIRROR)
    assert scores["count"] == 2 and scores["accuracy"] == 1.0
    with pytest.raises(ValueError, match="source vertex ids"):
        evaluate.region_scores(np.array([0, 3, 1]), source, target, MIRROR)
    with pytest.raises(ValueError, match="differ in shape"):
        evaluate.region_scores(np.array([0, 1]), source, target, MIRROR)
    with pytest.raises(ValueError, match="mirror table"):
        evaluate.region_scores(np.array([0, 1, 1]), source, np.array([0, 3, 1]), MIRROR)


def test_blend_scores_count_wrong_matches_on_skin_that_blends_the_two_regions():
    source, target = np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 1, 2, 2, 0])
    t2s = np.array([1, 0, 2, 4, 5, 3])  # targets 1 (arm.L -> body) and 5 (body -> arm.L) are wrong
    source_weights, target_weights = np.eye(3)[source], np.eye(3)[target]
    target_weights[1] = [0.35, 0.65, 0.0]  # target 1 is 35 % body: its miss is on a blend
    source_weights[3] = [0.25, 0.75, 0.0]  # target 5's match is 25 % body: under the share, a plain miss
    scores = evaluate.blend_scores(t2s, source, target, MIRROR, source_weights, target_weights)
    assert scores["blended"] == pytest.approx(1 / 2)
    assert scores["blend_accuracy"] == pytest.approx(5 / 6)
    assert evaluate.region_scores(t2s, source, target, MIRROR)["accuracy"] == pytest.approx(4 / 6)
    lenient = evaluate.blend_scores(t2s, source, target, MIRROR, source_weights, target_weights, share=0.2)
    assert lenient["blended"] == 1.0
    with pytest.raises(ValueError, match="weights must be"):
        evaluate.blend_scores(t2s, source, target, MIRROR, source_weights[:5], target_weights)


def test_part_agreement_sees_merged_sides_and_inconsistent_parts():
    regions = np.array([0, 0, 1, 1, 2, 2])
    split = np.array([5, 5, 6, 6, 7, 7])
    perfect = evaluate.part_agreement(split, split, regions, regions, MIRROR)
    assert perfect == {"agreement": 1.0, "sides_apart": 1.0, "parts_used": (3, 3)}
    merged = evaluate.part_agreement(split, np.array([5, 5, 6, 6, 6, 6]), regions, regions, MIRROR)
    assert merged["sides_apart"] == 0.0 and merged["agreement"] == pytest.approx(4 / 6)
    assert merged["parts_used"] == (3, 2)


def test_frame_to_frame_report_on_seam_split_meshes_scores_every_welded_copy():
    """glTF characters split vertices at UV seams; cleaning welds them. The report's mirror ground truth
    must cover every input vertex (a welded copy takes its representative's mirror), not only one copy."""
    from sa3df.apps.report import evaluate_pairs_report
    from sa3df.core.files import MeshFeatures

    v, f = _x_symmetric_blob()
    seam = np.flatnonzero(v[:, 2] > v[:, 2].mean())[:40]  # split these: a copy each, used by some faces
    copies = len(v) + np.arange(len(seam))
    split_v = np.concatenate([v, v[seam]])
    split_f = f.copy()
    lookup = dict(zip(seam, copies))
    for row in range(0, len(f), 2):
        split_f[row] = [lookup.get(i, i) for i in f[row]]
    items = []
    for name in ("a", "b"):
        m = mesh.from_arrays(split_v, split_f, name=name)
        assert m.n_vertices == len(v) and m.input_vertex_count == len(split_v)
        position = (m.vertices - m.vertices.mean(0)).astype(np.float32)
        items.append(MeshFeatures(m, position, position, "geometric"))
    (pair,) = evaluate_pairs_report(items, None, symmetric=True)["pairs"]
    assert pair["pairs"] == len(split_v)  # every input vertex scored, the seam copies too
    assert pair["embedding"]["mean_error"] == 0.0 and pair["embedding"]["flip_rate"] == 0.0
