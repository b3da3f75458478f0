"""Feature matching: chunked nearest neighbours equal the full-matrix answer; correspondences know cycles."""

import numpy as np
import pytest
import torch
import trimesh

from sa3df.apps import match
from sa3df.core.progress import Cancelled


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_permuted_features_are_found_whatever_the_chunk():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(500, 32)).astype(np.float32)
    perm = rng.permutation(500)
    query = reference[perm] * rng.uniform(0.5, 3.0, size=(500, 1)) + rng.normal(scale=0.01, size=(500, 32))
    for chunk in (None, 7, 500, 10_000):
        idx, sim = match.nearest_neighbors(query, reference, chunk_size=chunk)
        assert idx.dtype == np.int64 and sim.dtype == np.float32 and idx.shape == sim.shape == (500,)
        np.testing.assert_array_equal(idx, perm)  # cosine ignores the per-row scale
        assert sim.min() > 0.99 and sim.max() <= 1.0 + 1e-6


def test_k_nearest_equals_full_matrix_topk():
    rng = np.random.default_rng(1)
    q, r = rng.normal(size=(123, 16)), rng.normal(size=(77, 16))
    full = _unit(q) @ _unit(r).T
    idx, sim = match.k_nearest_neighbors(torch.tensor(q), r, k=5, chunk_size=10)
    expected = np.argsort(-full, axis=1)[:, :5]
    np.testing.assert_array_equal(idx, expected)
    np.testing.assert_allclose(sim, np.take_along_axis(full, expected, 1), atol=1e-5)
    assert (np.diff(sim, axis=1) <= 1e-7).all()  # best first


def test_auto_chunk_keeps_10k_by_10k_within_budget():
    chunk = match.auto_chunk_size(10_000)
    assert chunk * 10_000 * 4 <= match.DEFAULT_BUDGET_BYTES and chunk >= 1000


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="dims"):
        match.nearest_neighbors(np.ones((3, 4)), np.ones((3, 5)))
    with pytest.raises(ValueError, match="non-finite"):
        match.nearest_neighbors(np.array([[np.nan, 1.0]]), np.ones((3, 2)))
    with pytest.raises(ValueError, match="k=4"):
        match.k_nearest_neighbors(np.ones((3, 2)), np.ones((3, 2)), k=4)
    with pytest.raises(ValueError, match=r"\(N, E\)"):
        match.nearest_neighbors(np.ones(3), np.ones((3, 2)))


def test_cancel_from_progress_stops_matching():
    def cancel(fraction, message):
        if fraction > 0.3:
            raise Cancelled()

    with pytest.raises(Cancelled):
        match.nearest_neighbors(np.random.rand(100, 4), np.random.rand(50, 4), chunk_size=10, progress=cancel)


def test_correspondence_cycles_exact_and_within_rings():
    sphere = trimesh.creation.icosphere(subdivisions=2)
    n = len(sphere.vertices)
    feats = sphere.vertices.astype(np.float32) + 2.0  # distinct directions, all positive
    corr = match.correspondence(feats, feats)
    np.testing.assert_array_equal(corr.target_to_source, np.arange(n))
    assert corr.mutual.all() and corr.mutual_fraction == 1.0 and np.allclose(corr.target_similarity, 1, atol=1e-6)

    # Target vertex 0 looks mostly like its neighbour: 0 -> neighbour -> neighbour, not back to 0.
    neighbour = int(sphere.vertex_neighbors[0][0])
    target = feats.copy()
    target[0] = 0.8 * feats[neighbour] + 0.2 * feats[0]
    corr = match.correspondence(feats, target)
    assert corr.target_to_source[0] == neighbour and not corr.mutual[0] and corr.mutual[1:].all()
    corr = match.correspondence(feats, target, target_faces=sphere.faces, mutual_rings=1)
    assert corr.mutual.all()  # the cycle ends one ring away from 0: accepted with rings=1


def test_within_rings_counts_edge_hops():
    path = np.array([[0, 1, 2], [1, 3, 2], [2, 3, 4], [3, 5, 4]])  # a strip 0..5
    hops = match.within_rings(path, 6, np.array([0, 0, 0]), np.array([0, 2, 4]), rings=1)
    np.testing.assert_array_equal(hops, [True, True, False])
    assert match.within_rings(path, 6, np.array([0]), np.array([4]), rings=2)[0]


def test_feature_smoothing_averages_the_one_ring():
    sphere = trimesh.creation.icosphere(subdivisions=1)
    feats = np.zeros((len(sphere.vertices), 2), np.float32)
    feats[:, 0] = 1.0
    feats[0] = [0.0, 1.0]
    out = match.smooth_features(feats, sphere.faces, iterations=1)
    ring = len(sphere.vertex_neighbors[0])
    np.testing.assert_allclose(out[0], [ring / (ring + 1), 1 / (ring + 1)], atol=1e-6)
    far = [i for i in range(len(feats)) if i != 0 and i not in sphere.vertex_neighbors[0]]
    np.testing.assert_allclose(out[far], feats[far])


def test_half_precision_path_reports_exact_similarities():
    """The CUDA path (float16 products, float32 similarities, re-sorted) exercised on the CPU."""
    rng = np.random.default_rng(4)
    q, r = rng.normal(size=(60, 24)), rng.normal(size=(90, 24))
    full = _unit(q) @ _unit(r).T
    idx, sim = match.k_nearest_neighbors(q, r, k=3, chunk_size=16, compute_dtype=torch.float16)
    np.testing.assert_allclose(sim, np.take_along_axis(full, idx, 1), atol=1e-5)  # exact for the winners
    assert (np.diff(sim, axis=1) <= 0).all()
    best = np.take_along_axis(full, np.argsort(-full, axis=1)[:, :1], 1)[:, 0]
    assert np.all(best - sim[:, 0] < 2e-3)  # float16 may only swap near-ties


def test_rest_proximity_breaks_feature_ties_by_place_and_reports_cosines():
    """Two source parts with identical features (a left and a right hand to a blind descriptor): the prior
    sends each target vertex to the part at its own place, whatever the chunk size, and whatever scale
    and offset the target mesh has (positions are box-normalised)."""
    rng = np.random.default_rng(2)
    part = rng.normal(size=(40, 8)).astype(np.float32)
    source_points = np.concatenate([rng.uniform(-1, 0, (40, 3)), rng.uniform(0, 1, (40, 3))])
    source_points[[0, -1]] = [-1, -1, -1], [1, 1, 1]  # both boxes span the cube
    source_features = np.concatenate([part, part])
    target_points = source_points * 3.0 + 5.0
    for chunk in (None, 7):
        prior = match.RestProximity(target_points, source_points, weight=0.2, sigma=0.03)
        plain, _ = match.nearest_neighbors(source_features, source_features, chunk_size=chunk)
        idx, sim = match.nearest_neighbors(source_features, source_features, chunk_size=chunk, proximity=prior)
        assert (plain < 40).all()  # without the prior every tie goes to the first copy
        np.testing.assert_array_equal(idx, np.arange(80))
        np.testing.assert_allclose(sim, 1.0, atol=1e-5)  # the cosine, not cosine + bonus


def test_rest_proximity_bonus_is_bounded_so_clear_features_win():
    features = np.array([[1.0, 0.0], [0.6, 0.8]], dtype=np.float32)  # cosine to [1, 0]: 1.0 and 0.6
    points = np.array([[0.0, 0, 0], [1.0, 1, 1]])
    queries, query_points = features[[0, 0]], points[::-1]  # the first query sits on the worse-matching vertex

    def nearest(weight):
        return match.nearest_neighbors(queries, features, proximity=match.RestProximity(query_points, points, weight))[0]

    np.testing.assert_array_equal(nearest(0.2), [0, 0])  # a 0.4 cosine gap outweighs a 0.2 bonus
    np.testing.assert_array_equal(nearest(0.5), [1, 0])
    with pytest.raises(ValueError, match="proximity has 2 query and 2 reference points for 1 query"):
        match.nearest_neighbors(features[:1], features, proximity=match.RestProximity(query_points, points))
    with pytest.raises(ValueError, match="sigma > 0"):
        match.RestProximity(query_points, points, sigma=0.0)
