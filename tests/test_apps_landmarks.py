"""Extremity landmarks and the landmark prior on the built-in example character (no data files needed)."""

import numpy as np
import pytest
import torch

from sa3df.apps import evaluate, landmark_pairing, landmarks, match
from sa3df.core.mesh import Mesh
from sa3df.examples import humanoid


@pytest.fixture(scope="module")
def poses():
    return {pose: humanoid(pose, resolution=32).mesh for pose in ("rest", "walk", "crouch")}


def _turned(mesh: Mesh, degrees: float, order: np.ndarray) -> Mesh:
    """``mesh`` turned about Z, its vertices listed in ``order`` (copy vertex k is vertex order[k])."""
    t = np.radians(degrees)
    rotation = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    return Mesh(mesh.vertices[order] @ rotation.T * 3.0, np.argsort(order)[mesh.faces], np.arange(len(order)),
                len(order), "turned copy")


def test_the_extremities_of_a_person_are_head_hands_and_feet(poses):
    rest = poses["rest"]
    found = rest.vertices[landmarks.mesh_landmarks(rest).ids]
    assert len(found) == 5
    by_height = found[np.argsort(found[:, 2])]
    assert by_height[-1, 2] > 0.95 * rest.vertices[:, 2].max()  # the top of the head
    assert np.all(by_height[:2, 2] < 0.1)  # two feet on the ground
    assert sorted(np.sign(by_height[2:4, 0])) == [-1, 1]  # a hand on each side
    assert np.all(np.abs(by_height[2:4, 0]) > 0.6)


@pytest.mark.parametrize("pose", ["walk", "crouch"])
@pytest.mark.parametrize("degrees", [0, 180, 90])
def test_prior_alone_matches_a_posed_turned_copy_without_swapping_sides(poses, pose, degrees):
    """Vertex ids are the ground truth (same character); the copy is shuffled, scaled, turned: only
    the landmark prior matches (all-zero features), and left must stay left even turned 180°."""
    rest = poses["rest"]
    order = np.random.default_rng(degrees).permutation(rest.n_vertices)
    target = _turned(poses[pose], degrees, order)
    prior = match.matching_prior(rest, target, up="z")
    zeros_s, zeros_t = np.zeros((rest.n_vertices, 1)), np.zeros((target.n_vertices, 1))
    predicted = match.correspondence(zeros_s, zeros_t, proximity=prior).target_to_source
    truth = order  # target vertex k is rest vertex order[k]
    mirrored = evaluate.mirrored_ground_truth(rest.vertices, rest.faces, axis=0)[order]
    unshuffled = Mesh(poses[pose].vertices, rest.faces, rest.input_index, rest.input_vertex_count)
    scores = evaluate.evaluate_correspondence(unshuffled, predicted[np.argsort(order)], np.arange(rest.n_vertices),
                                              mirrored[np.argsort(order)])
    assert scores["flip_rate"] < 0.05  # measured 0.002-0.022
    assert scores["acc@0.1"] > 0.7 and scores["mean_error"] < 0.08  # measured 0.79-0.84 and 0.05-0.06


def test_pairing_finds_the_turn_between_the_meshes(poses):
    rest = poses["rest"]
    order = np.random.default_rng(1).permutation(rest.n_vertices)
    source, target = landmarks.mesh_landmarks(rest), landmarks.mesh_landmarks(_turned(rest, 90, order))
    pairing = landmark_pairing.pair_landmarks(source, target, np.array([0, 0, 1.0]))
    paired = order[target.ids[pairing.pairs[:, 1]]]
    assert np.linalg.norm(rest.vertices[paired] - rest.vertices[source.ids[pairing.pairs[:, 0]]], axis=1).max() < 0.05
    np.testing.assert_allclose(pairing.rotation @ [1.0, 0, 0], [0, -1, 0], atol=1e-6)  # undoes the 90° turn


@pytest.mark.parametrize("pose", ["rest", "walk"])
def test_crossed_feet_or_hands_are_put_back_on_their_sides(poses, pose):
    """A pairing that crosses the feet (or the hands) of the same character is uncrossed by their roots,
    unless the pairing can tell the two apart."""
    up = np.array([0, 0, 1.0])
    marks = landmarks.mesh_landmarks(poses["rest"]), landmarks.mesh_landmarks(poses[pose])
    right = landmark_pairing.pair_landmarks(*marks, up)
    rest = poses["rest"].vertices  # the poses share their vertices: each extremity's mate is the one nearest it
    truth = np.linalg.norm(rest[marks[0].ids][:, None] - rest[marks[1].ids][None], axis=2).argmin(axis=1)
    np.testing.assert_array_equal(right.pairs[:, 1], truth)
    heights = rest[marks[0].ids, 2]
    for twins in (np.argsort(heights)[:2], np.argsort(heights)[2:4]):  # feet, hands
        crossed = truth.copy()
        crossed[twins] = crossed[twins[::-1]]
        unsure = landmark_pairing.side_checked(*marks, crossed, right.rotation, up, lambda chosen, x, y: {x, y} == set(twins))
        np.testing.assert_array_equal(unsure, truth)
        sure = landmark_pairing.side_checked(*marks, crossed, right.rotation, up, lambda chosen, x, y: False)
        np.testing.assert_array_equal(sure, crossed)


def test_a_proximity_sum_adds_its_terms_everywhere_a_prior_is_used():
    rng = np.random.default_rng(0)
    a = match.RestProximity(rng.normal(size=(6, 3)), rng.normal(size=(9, 3)), weight=0.5)
    b = match.RestProximity(rng.normal(size=(6, 4)), rng.normal(size=(9, 4)), weight=2.0, sigma=0.5,
                            box_normalize=False)
    both = match.ProximitySum([a, b])
    block = torch.zeros(6, 9)
    expected = a.add_bonus(torch.zeros(6, 9), slice(0, 6)) + b.add_bonus(torch.zeros(6, 9), slice(0, 6))
    torch.testing.assert_close(both.add_bonus(block, slice(0, 6)), expected)
    indices = rng.integers(0, 9, size=(6, 2))
    np.testing.assert_allclose(both.pair_bonus(indices), a.pair_bonus(indices) + b.pair_bonus(indices))
    assert both.swapped().query_points.shape == (9, 3)
    assert both.among_references(np.arange(9) < 4).reference_points.shape == (4, 3)


def test_bad_settings_are_refused(poses):
    rest = poses["rest"]
    with pytest.raises(ValueError, match="weight must be 0 or more"):
        landmarks.landmark_prior(rest, rest, weight=-1)
    with pytest.raises(ValueError, match="up axis must be one of x, y, z"):
        landmarks.landmark_prior(rest, rest, up="w")
    assert match.matching_prior(rest, rest, rest_prior=0.0, landmark_prior=0.0) is None


def _three_boxes():
    """Three separate boxes in a row along X, the rig's chain 0 -> 1 -> 2 out of order: box 2 sits between
    boxes 0 and 1, as a hanging forearm sits beside a thigh."""
    import trimesh

    from sa3df.core.mesh import from_arrays

    parts = [trimesh.creation.box(extents=(1, 1, 1)).apply_translation((x, 0, 0)) for x in (0.0, 3.5, 1.5)]
    vertices = np.concatenate([p.vertices for p in parts])
    faces = np.concatenate([p.faces + 8 * i for i, p in enumerate(parts)])
    weights = np.repeat(np.eye(3), 8, axis=0)
    return from_arrays(vertices, faces, name="boxes"), weights, np.array([-1, 0, 1])


def test_a_rigs_pieces_are_bridged_where_the_rig_joins_them():
    boxes, weights, parents = _three_boxes()
    own = boxes.components()
    first, second, third = own[boxes.input_to_clean[[0, 8, 16]]]  # the pieces of boxes 0, 1, 2
    links = landmarks.rig_piece_links(boxes, weights[boxes.input_index], parents)
    assert {tuple(sorted(own[pair])) for pair in links} == {tuple(sorted(p)) for p in ((first, second), (second, third))}

    def bridged(graph):
        edges = graph.tocoo()
        return {tuple(sorted(p)) for p in zip(own[edges.row], own[edges.col]) if p[0] != p[1]}

    nearest = bridged(landmarks.surface_graph(boxes))  # without links: to the nearest pieces
    assert nearest == {tuple(sorted(p)) for p in ((first, third), (second, third))}
    boxes.piece_links = links
    assert bridged(landmarks.surface_graph(boxes)) == {tuple(sorted(p)) for p in ((first, second), (second, third))}
    assert boxes.normalized().piece_links is links  # copies keep the links
    boxes.piece_links = links[:1]  # box 2 in no link: bridged to the others' group by its nearest vertices
    fallback = bridged(landmarks.surface_graph(boxes))
    assert {tuple(sorted(p)) for p in ((first, second), (first, third))} <= fallback, fallback


def test_tie_proof_keys_keep_the_order_and_settle_near_ties_by_vertex_id():
    values = np.array([0.5, 1.0 + 1e-9, 1.0, 0.2, 1.0 - 1e-9, np.inf])
    keys = landmarks.tie_proof_keys(values[:5])
    assert int(np.argmax(keys)) == 1  # 1 ± 1e-9 are equal: the lowest id of them wins
    assert list(np.argsort(-keys)) == [1, 2, 4, 0, 3]
    assert int(np.argmax(landmarks.tie_proof_keys(values))) == 5  # an unreachable vertex stays farthest


def _boxes(centres_and_sizes, noise: float = 0.0, seed: int = 0) -> Mesh:
    """One mesh of separate axis-aligned boxes (a figure of rigid pieces), its vertices moved by ``noise``."""
    import trimesh

    parts = [trimesh.creation.box(extents=size).apply_translation(centre) for centre, size in centres_and_sizes]
    whole = trimesh.util.concatenate(parts)
    vertices = whole.vertices + noise * np.random.default_rng(seed).standard_normal(whole.vertices.shape)
    return Mesh(vertices, np.asarray(whole.faces), np.arange(len(vertices)), len(vertices), "boxes")


ROBOT_BOXES = [((0, 0, 1.2), (0.5, 0.3, 0.7)), ((0, 0, 1.75), (0.3, 0.3, 0.3)),  # body, head
               ((-0.35, 0, 1.1), (0.12, 0.12, 0.7)), ((0.35, 0, 1.1), (0.12, 0.12, 0.7)),  # hanging arms
               ((-0.13, 0, 0.45), (0.15, 0.15, 0.8)), ((0.13, 0, 0.45), (0.15, 0.15, 0.8))]  # legs


def test_the_extremities_of_box_pieces_do_not_depend_on_noise():
    """Box corners tie exactly; moved by 1e-8 (as a world transform moves them) a raw argmax picked
    another corner, and through the add-on the robot's head was paired with the man's hand."""
    found = {tuple(landmarks.mesh_landmarks(_boxes(ROBOT_BOXES, noise, seed)).ids)
             for noise, seed in [(0.0, 0), (1e-8, 0), (1e-8, 1), (1e-8, 2), (1e-8, 3)]}
    assert len(found) == 1, found
