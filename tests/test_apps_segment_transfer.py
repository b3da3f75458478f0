"""Colours, joint k-means, label transfer and skin-weight transfer on cases with known answers."""

import numpy as np
import pytest
import trimesh

from sa3df.apps import colors, limb_parts, segment, transfer


def _clusters(rng, centres, per_cluster, noise=0.05):
    labels = np.repeat(np.arange(len(centres)), per_cluster)
    return centres[labels] + rng.normal(scale=noise, size=(len(labels), centres.shape[1])), labels


def _same_partition(a, b):
    """Labels a and b split the points identically (up to renaming)."""
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_joint_kmeans_finds_separated_clusters_with_one_numbering_for_both_meshes():
    rng = np.random.default_rng(0)
    centres = np.eye(16)[:5] * 3 + 0.1  # 5 well-separated directions
    a, truth_a = _clusters(rng, centres, [40, 60, 80, 100, 120])
    b, truth_b = _clusters(rng, centres, [30, 30, 30, 30, 30])
    (labels_a, labels_b), centroids = segment.joint_kmeans([a, b], k=5, seed=0)
    assert labels_a.shape == (400,) and labels_b.shape == (150,) and centroids.shape == (5, 16)
    assert _same_partition(labels_a, truth_a) and _same_partition(labels_b, truth_b)
    mapping = dict(zip(truth_a.tolist(), labels_a.tolist()))
    np.testing.assert_array_equal(labels_b, [mapping[t] for t in truth_b])  # consistent across meshes
    assert labels_a[truth_a == 4][0] == 0  # numbered by size: the largest cluster is 0
    np.testing.assert_allclose(np.linalg.norm(centroids, axis=1), 1, atol=1e-5)
    sub, _ = segment.joint_kmeans([a, b], k=5, seed=0, max_points=200)  # fit on a subsample
    assert _same_partition(sub[0], truth_a)
    again, _ = segment.joint_kmeans([a, b], k=5, seed=0)
    np.testing.assert_array_equal(again[0], labels_a)
    with pytest.raises(ValueError, match="k=600"):
        segment.joint_kmeans([a, b], k=600)


def test_transfer_labels_votes_by_feature():
    rng = np.random.default_rng(1)
    centres = np.eye(8)[:3] * 2
    src, src_labels = _clusters(rng, centres, [50, 50, 50])
    tgt, tgt_truth = _clusters(rng, centres, [20, 20, 20])
    src_labels = np.array([7, 3, 5])[src_labels]
    out = segment.transfer_labels(src_labels, src, tgt, k=5)
    np.testing.assert_array_equal(out, np.array([7, 3, 5])[tgt_truth])
    assert (segment.transfer_labels(np.full(150, -1), src, tgt) == -1).all()


def test_smooth_labels_removes_speckle():
    sphere = trimesh.creation.icosphere(subdivisions=3)
    labels = (sphere.vertices[:, 2] > 0).astype(int)
    noisy = labels.copy()
    speckle = np.flatnonzero(np.abs(sphere.vertices[:, 2]) > 0.5)[::9]
    noisy[speckle] = 1 - noisy[speckle]
    cleaned = segment.smooth_labels(noisy, sphere.faces, iterations=2)
    far = np.abs(sphere.vertices[:, 2]) > 0.3
    np.testing.assert_array_equal(cleaned[far], labels[far])


def test_weight_transfer_on_identical_meshes():
    sphere = trimesh.creation.icosphere(subdivisions=3)
    v = sphere.vertices
    feats = np.c_[v, np.ones(len(v))] + 0.0  # distinct directions per vertex
    bones = np.array([[0, 0, 1.0], [0, 0, -1.0], [1.0, 0, 0], [-1.0, 0, 0], [0, 1.0, 0]])
    raw = np.exp(-3 * np.linalg.norm(v[:, None] - bones[None], axis=2))
    weights = transfer.limit_influences(raw, 3)  # ground truth: 3 influences per vertex
    exact = transfer.transfer_vertex_weights(weights, feats, feats, k=1, smooth_iterations=0, max_influences=None,
                                             min_weight=0)
    np.testing.assert_allclose(exact, weights, atol=1e-6)
    soft = transfer.transfer_vertex_weights(weights, feats, feats, target_faces=sphere.faces)
    assert soft.shape == weights.shape and soft.dtype == np.float32
    np.testing.assert_allclose(soft.sum(axis=1), 1, atol=1e-5)
    assert ((soft > 0).sum(axis=1) <= 4).all()
    smooth_truth = transfer.limit_influences(raw, None)  # smooth weights: blending neighbours moves them little
    soft = transfer.transfer_vertex_weights(smooth_truth, feats, feats, target_faces=sphere.faces)
    assert np.abs(soft - smooth_truth).max() < 0.06 and ((soft > 0).sum(axis=1) == 4).all()


def test_weight_transfer_follows_a_permutation_and_names_bad_input():
    rng = np.random.default_rng(2)
    feats = rng.normal(size=(200, 12))
    weights = rng.dirichlet(np.ones(6) * 0.3, size=200)
    perm = rng.permutation(200)
    out = transfer.transfer_vertex_weights(weights, feats, feats[perm], k=4, max_influences=6, min_weight=0)
    np.testing.assert_allclose(out, weights[perm], atol=3e-3)  # random features: other neighbours weigh ~0
    holes = weights.copy()
    holes[::2] = 0  # half the source vertices belong to no group: they must not be matched
    out = transfer.transfer_vertex_weights(holes, feats, feats, k=1, smooth_iterations=0, max_influences=None,
                                           min_weight=0)
    np.testing.assert_allclose(out[1::2], weights[1::2], atol=1e-6)
    assert (out.sum(axis=1) > 0.999).all()
    with pytest.raises(ValueError, match="all zero"):
        transfer.transfer_vertex_weights(np.zeros_like(weights), feats, feats)
    with pytest.raises(ValueError, match="Ns = 200"):
        transfer.transfer_vertex_weights(weights[:10], feats, feats)
    with pytest.raises(ValueError, match="non-negative"):
        transfer.transfer_vertex_weights(-weights, feats, feats)


def test_limit_influences_keeps_the_largest():
    w = np.array([[0.5, 0.2, 0.15, 0.1, 0.05], [0, 0, 0, 0, 0]])
    out = transfer.limit_influences(w, max_influences=2)
    np.testing.assert_allclose(out, [[0.5 / 0.7, 0.2 / 0.7, 0, 0, 0], [0, 0, 0, 0, 0]])


def test_position_and_correspondence_colors():
    v = np.array([[0, 0, 0], [2, 1, 5], [1, 0.5, 5]], float)
    rgb = colors.position_colors(v)
    np.testing.assert_allclose(rgb, [[0.1, 0.1, 0.1], [0.9, 0.9, 0.9], [0.5, 0.5, 0.9]], atol=1e-6)
    src, tgt = colors.correspondence_colors(v, np.array([2, 2, 0, 1]))
    np.testing.assert_array_equal(tgt, src[[2, 2, 0, 1]])
    flat = colors.position_colors(np.array([[0, 0, 0], [1, 0, 0]], float))
    np.testing.assert_allclose(flat[:, 1:], 0.5)


def test_pca_colors_are_joint_and_comparable():
    rng = np.random.default_rng(3)
    base = rng.normal(size=(300, 20))
    a, b = base[:200], base[100:] * 4.0  # b's rows are scaled copies: same directions
    ca, cb = colors.pca_colors([a, b])
    assert ca.shape == (200, 3) and cb.shape == (200, 3)
    assert 0 <= ca.min() and ca.max() <= 1 and ca.dtype == np.float32
    np.testing.assert_allclose(ca[100:], cb[:100], atol=1e-5)  # same feature, same colour on both meshes
    assert ca.std(axis=0).min() > 0.1


def test_label_colors_distinct():
    labels = np.arange(30)
    rgb = colors.label_colors(labels, 30)
    assert len(np.unique(rgb.round(3), axis=0)) == 30
    np.testing.assert_allclose(colors.label_colors(np.array([-1, 0]), 2)[0], colors.UNLABELLED)
    with pytest.raises(ValueError, match="out of range"):
        colors.label_colors(np.array([5]), 3)


def _mirrored_hands(rng):
    """A 'left' and a 'right' part whose features are identical (what a left/right-blind descriptor gives)
    at opposite places; the target is the same shape, scaled and moved."""
    part = rng.normal(size=(30, 8))
    features = np.concatenate([part, part])
    points = np.concatenate([rng.uniform(-1, -0.5, (30, 3)), rng.uniform(0.5, 1, (30, 3))])
    return features, points, points * 2.0 + 1.0


def test_rest_proximity_sends_labels_and_weights_to_the_part_at_the_same_place():
    from sa3df.apps.match import RestProximity

    rng = np.random.default_rng(5)
    features, points, target_points = _mirrored_hands(rng)
    side = np.repeat([0, 1], 30)
    prior = RestProximity(target_points, points, weight=0.2)
    blind = segment.transfer_labels(side, features, features, k=4)
    assert (blind == 0).all()  # ties go to the first copy: every right vertex is called left
    np.testing.assert_array_equal(segment.transfer_labels(side, features, features, k=4, proximity=prior), side)

    # weights: one unweighted source vertex (left out of the matching) must not shift the prior's points
    weights = np.eye(2)[side]
    weights[0] = 0.0
    out = transfer.transfer_vertex_weights(weights, features, features, smooth_iterations=0, proximity=prior)
    np.testing.assert_array_equal(out[1:].argmax(1), side[1:])


def _body(leg_scale=1.0):
    """A narrow 'torso' ellipsoid and two mirrored 'legs' (separate spheres at x = ±1.5), Z up; features
    that cannot tell left from right (what a leg is, and height)."""
    from sa3df.core import mesh

    ball = trimesh.creation.icosphere(subdivisions=2)
    torso = ball.vertices * [0.3, 0.5, 1.0]
    legs = [ball.vertices * 0.4 * leg_scale + [x, 0, -1.5] for x in (1.5, -1.5)]
    v = np.concatenate([torso] + legs)
    n = len(ball.vertices)
    faces = np.concatenate([ball.faces + i * n for i in range(3)])
    part = np.repeat([0, 1, 2], n)  # 0 torso, 1 left leg (+x), 2 right leg
    features = np.c_[part == 0, part > 0, 0.1 * v[:, 2]].astype(np.float32)
    return mesh.from_arrays(v, faces, name=f"body {leg_scale}"), features, part


def test_sided_parts_give_left_and_right_legs_their_own_part_with_k_kept():
    meshes, features, truth = zip(*(_body(s) for s in (1.0, 1.3)))
    joint, _ = segment.joint_kmeans(list(features), k=2, seed=0)
    assert len(np.unique(joint[0][truth[0] > 0])) == 1  # features alone: both legs are one part
    labels, info = limb_parts.sided_parts(list(features), list(meshes), k=3, up="z")
    assert info == {"k": 3, "parts_used": [3, 3]}
    for lab, part in zip(labels, truth):
        assert _same_partition(lab, part)  # torso whole, each leg a part
    assert (labels[0][truth[0] == 1][0], labels[0][truth[0] == 2][0]) == (labels[1][truth[1] == 1][0],
                                                                          labels[1][truth[1] == 2][0])


def test_sided_parts_merge_back_to_k_without_joining_left_and_right():
    (body, features, truth) = _body()
    labels, info = limb_parts.sided_parts([features], [body], k=2, up="z")
    assert info["k"] == 2  # 3 pieces after the cut, one merge: a leg joins the torso, never the other leg
    assert labels[0][truth == 1][0] != labels[0][truth == 2][0]


def _legs_together():
    """A torso ball and two narrow 'legs' whose inner sides lie within the mirror plane's band (a third of
    each leg's vertices: more than ``CENTRAL``), touching neither each other nor the torso."""
    from sa3df.core import mesh

    ball = trimesh.creation.icosphere(subdivisions=2)
    legs = [ball.vertices * [0.1, 0.3, 0.6] + [x, 0, -1.5] for x in (0.1, -0.1)]
    v = np.concatenate([ball.vertices * [0.15, 0.3, 0.7]] + legs)
    n = len(ball.vertices)
    faces = np.concatenate([ball.faces + i * n for i in range(3)])
    return mesh.from_arrays(v, faces, name="legs", weld=False), np.repeat([0, 1, 2], n)


def test_a_part_holding_two_legs_that_touch_the_mirror_plane_is_split(monkeypatch):
    """k-means puts both legs in one part; a third of it lies on the plane, which alone would call it a
    torso, but its two sides are not joined within it."""
    body, truth = _legs_together()
    sides = limb_parts.mesh_sides([body])[0]
    assert (sides[truth == 1] == 0).mean() > limb_parts.CENTRAL
    both_legs, mesh_ids = np.minimum(truth, 1), np.zeros(len(truth), np.int64)
    split = limb_parts._split_mirrored(both_legs, sides, mesh_ids, [body])
    off_plane = sides != 0
    for leg in (1, 2):
        assert len(np.unique(split[(truth == leg) & off_plane])) == 1
    assert split[(truth == 1) & off_plane][0] != split[(truth == 2) & off_plane][0]
    assert len(np.unique(split[truth == 0])) == 1  # the torso, joined across the plane, stays whole
    monkeypatch.setattr(limb_parts, "JOINED", 0.0)  # the plane share alone: one part for both legs
    np.testing.assert_array_equal(limb_parts._split_mirrored(both_legs, sides, mesh_ids, [body]), both_legs)


def test_a_central_part_gives_the_limb_roots_it_holds_to_the_limbs():
    """A strip across the mirror plane: the middle part reaches to |x| = 0.6 on both sides, limbs beyond.
    A vertex at x joins its side's limb when its way there (0.6 - |x|) is under REACH × |x|."""
    from sa3df.core import mesh

    grid = trimesh.creation.box(extents=[2.0, 0.1, 0.1])
    strip = trimesh.Trimesh(*trimesh.remesh.subdivide_to_size(grid.vertices, grid.faces, 0.02))
    x = strip.vertices[:, 0]
    labels = np.where(x > 0.6, 1, np.where(x < -0.6, 2, 0))
    sides = np.where(np.abs(x) <= 0.05, 0, np.sign(x)).astype(np.int64)
    out = limb_parts._pull_limb_roots(labels, mesh.from_arrays(strip.vertices, strip.faces, weld=False), x, sides)
    root = 0.6 / (1 + limb_parts.REACH)  # 0.24
    np.testing.assert_array_equal(out[np.abs(x) < root - 0.03], 0)
    np.testing.assert_array_equal(out[(x > root + 0.03)], 1)
    np.testing.assert_array_equal(out[(x < -root - 0.03)], 2)


def test_carried_parts_make_the_first_meshs_parts_and_carry_them_by_the_map():
    meshes, features, truth = zip(*(_body(s) for s in (1.0, 1.3)))
    reversed_map = np.arange(meshes[1].n_vertices)[::-1].copy()  # any map: the parts follow it, not the features
    labels, info = limb_parts.carried_parts(list(features), list(meshes), k=3, up="z", smooth_iterations=0,
                                         maps=[reversed_map])
    assert info == {"k": 3, "parts_used": [3, 3]}
    assert _same_partition(labels[0], truth[0])
    np.testing.assert_array_equal(labels[1], labels[0][reversed_map])
    default, _ = limb_parts.carried_parts(list(features), list(meshes), k=3, up="z")  # the default match
    assert _same_partition(default[1], truth[1])
    assert default[0][truth[0] == 0][0] == default[1][truth[1] == 0][0]  # the torso's part is the torso's on both
    with pytest.raises(ValueError, match="map 1 has 3 entries"):
        limb_parts.carried_parts(list(features), list(meshes), k=3, up="z", maps=[np.zeros(3, int)])
    with pytest.raises(ValueError, match="got 2 maps for 1 meshes"):
        limb_parts.carried_parts(list(features), list(meshes), k=3, up="z", maps=[reversed_map, reversed_map])
