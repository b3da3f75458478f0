"""The built-in example character is a clean, symmetric, consistently posed mesh (the demo relies on it)."""

import numpy as np
import trimesh

from sa3df import examples


def test_character_is_closed_and_poses_share_connectivity():
    rest, walk = examples.humanoid("rest"), examples.humanoid("walk")
    tm = trimesh.Trimesh(rest.mesh.vertices, rest.mesh.faces, process=False)
    assert tm.is_watertight and tm.is_winding_consistent and tm.volume > 0
    assert len(np.unique(rest.mesh.components())) == 1
    np.testing.assert_array_equal(rest.mesh.faces, walk.mesh.faces)
    moved = np.linalg.norm(walk.mesh.vertices - rest.mesh.vertices, axis=1)
    assert moved.max() > 0.3 and np.percentile(moved, 25) < 0.05, "limbs move, the torso mostly stays"


def test_skin_weights_are_normalised_and_follow_bones():
    rest = examples.humanoid("rest")
    assert rest.weights.shape == (rest.mesh.n_vertices, len(examples.BONES))
    np.testing.assert_allclose(rest.weights.sum(axis=1), 1.0, atol=1e-9)
    left_hand = np.argmax(rest.mesh.vertices[:, 0])
    assert rest.bone_names[np.argmax(rest.weights[left_hand])] == "forearm.L"


def test_rest_pose_is_left_right_symmetric():
    v = examples.humanoid("rest").mesh.vertices
    mirrored = v * [-1, 1, 1]
    from scipy.spatial import cKDTree

    distance, _ = cKDTree(v).query(mirrored)
    assert distance.max() < 1e-6, "the mirror of every vertex is a vertex"
