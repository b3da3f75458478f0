"""The rig model and pose fitter on a synthetic skinned character (no Blender, no data files).

The character is a bent chain of tubes (a spine with an arm branching off) whose rest frames are NOT
axis-aligned, so bone-local conventions are exercised. Poses are generated with the same rig, so vertex
index is a ground-truth correspondence and the generating rotations are the answer.
"""

import numpy as np
import pytest
import torch

from sa3df.motion.fit import MotionConfig, align_pose, fit_motion
from sa3df.core.progress import Cancelled
from sa3df.motion.rig import Rig
from sa3df.motion.skinning import TorchRig, apply_to_frames, pose_rig
from sa3df.motion.rotations import (
    continuous_quaternions, matrix_from_6d, matrix_from_quaternion, quaternion_from_matrix, rotation_angle,
    six_from_matrix,
)


def _rotation(axis, angle):
    axis = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def _frame(rotation, head):
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = rotation, head
    return m


def tube_rig(tilt=0.4, thin_last=False) -> Rig:
    """Four bones: root -> spine -> neck, and an arm off the spine. Each bone is a tube (12 around x 8
    along its Y axis); vertices near a child blend 50/50. ``thin_last``: the arm's vertices lie on its axis
    (a bone whose twist no vertex can see)."""
    base = _rotation([1, 0.3, 0.2], tilt)  # the whole rig is tilted: rest frames are not axis-aligned
    layout = [(-1, [0, 0, 0], np.eye(3)), (0, [0, 1.0, 0], np.eye(3)), (1, [0, 2.0, 0], np.eye(3)),
              (1, [0, 1.6, 0], _rotation([0, 0, 1], -np.pi / 2))]  # arm points along +X
    rest, heads = [], []
    for parent, head, rot in layout:
        rest.append(_frame(base @ rot, base @ np.array(head, dtype=float)))
    verts, weights, faces = [], [], []
    for b, m in enumerate(rest):
        radius = 0.0 if (thin_last and b == 3) else 0.15
        ring, rows = 12, 8
        for r in range(rows):
            y = r / (rows - 1)
            for k in range(ring):
                a = 2 * np.pi * k / ring
                local = np.array([radius * np.cos(a), y, radius * np.sin(a) + (0.01 * k if radius == 0 else 0)])
                verts.append(m[:3, :3] @ local + m[:3, 3])
                w = np.zeros(len(rest))
                children = [c for c, (p, _, _) in enumerate(layout) if p == b]
                if y > 0.85 and children:
                    w[b], w[children[0]] = 0.5, 0.5
                else:
                    w[b] = 1.0
                weights.append(w)
        start = len(verts) - ring * rows
        for r in range(rows - 1):
            for k in range(ring):
                a, b2 = start + r * ring + k, start + r * ring + (k + 1) % ring
                faces += [[a, b2, a + ring], [b2, b2 + ring, a + ring]]
    return Rig([f"bone{i}" for i in range(4)], [p for p, _, _ in layout], np.array(rest), np.array(verts),
               np.array(weights), faces=np.array(faces), name="tubes")


def smooth_poses(rig: Rig, frames=16, amplitude=0.5, seed=0, twist=True) -> np.ndarray:
    """(T, B, 4, 4) smooth random local rotations (plus root translation) for the rig."""
    rng = np.random.default_rng(seed)
    axes = rng.normal(size=(rig.n_bones, 3))
    if not twist:
        axes[:, 1] = 0  # no spin about the bones' own (Y) axes
    phases = rng.uniform(0, 2 * np.pi, rig.n_bones)
    local = np.tile(np.eye(4), (frames, rig.n_bones, 1, 1))
    for t in range(frames):
        for b in range(rig.n_bones):
            local[t, b, :3, :3] = _rotation(axes[b], amplitude * np.sin(2 * np.pi * t / frames + phases[b]))
        local[t, rig.root, :3, 3] = [0.3 * t / frames, 0.0, 0.1 * np.sin(t)]
    return local


def test_quaternions_round_trip_and_stay_continuous():
    rng = np.random.default_rng(1)
    q = rng.normal(size=(50, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    back = quaternion_from_matrix(matrix_from_quaternion(q))
    assert np.allclose(np.abs((back * q).sum(1)), 1.0, atol=1e-9)  # same rotation (up to sign)
    path = continuous_quaternions(np.where(rng.random((50, 1)) < 0.5, -q, q))
    flips = (path[1:] * path[:-1]).sum(1)
    assert (flips >= 0).all()
    m = torch.as_tensor(matrix_from_quaternion(q))
    assert torch.allclose(matrix_from_6d(six_from_matrix(m)), m, atol=1e-9)


def test_rest_pose_and_rigid_root_rotation():
    rig = tube_rig()
    identity = np.tile(np.eye(4), (1, rig.n_bones, 1, 1))
    verts, heads = pose_rig(rig, identity)
    assert np.allclose(verts[0], rig.rest_vertices, atol=1e-9)
    assert np.allclose(heads[0], rig.rest_matrices[:, :3, 3], atol=1e-9)
    turn = identity.copy()
    turn[0, 0, :3, :3] = _rotation([0, 1, 0], 0.7)  # spin about the root bone's own Y axis
    verts, _ = pose_rig(rig, turn)
    root = rig.rest_matrices[0]
    world_turn = root[:3, :3] @ _rotation([0, 1, 0], 0.7) @ root[:3, :3].T
    expected = (rig.rest_vertices - root[:3, 3]) @ world_turn.T + root[:3, 3]
    assert np.allclose(verts[0], expected, atol=1e-9)


def test_sparse_skinning_matches_the_dense_product_and_its_gradient():
    rig = tube_rig()
    weights = rig.weights.copy()
    weights[:5] *= 0.5  # partly unweighted vertices keep the rest of their place at rest
    rig = Rig(rig.bone_names, rig.parents, rig.rest_matrices, rig.rest_vertices, weights, faces=rig.faces)
    model = TorchRig(rig)
    ids = torch.tensor([0, 3, 200, 7, 150, 383])
    skinning = torch.randn(5, rig.n_bones, 3, 4, requires_grad=True)
    skinner = model.skinner(ids)
    assert skinner.design.layout == torch.sparse_csr  # the CPU path under test
    sparse = skinner(skinning)
    w, rest = model.weights[ids], model.rest_vertices[ids]
    design = (w[:, :, None] * torch.cat([rest, torch.ones(len(ids), 1)], 1)[:, None]).reshape(len(ids), -1)
    dense = apply_to_frames(design, skinning.transpose(-1, -2).flatten(1, 2)) + (1 - w.sum(1, keepdim=True)) * rest
    assert torch.allclose(sparse, dense, atol=1e-5)
    probe = torch.randn_like(dense)
    (grad_sparse,) = torch.autograd.grad((sparse * probe).sum(), skinning)
    (grad_dense,) = torch.autograd.grad((dense * probe).sum(), skinning)
    assert grad_sparse.abs().max() > 0.1
    assert torch.allclose(grad_sparse, grad_dense, atol=1e-5)
    # The rows' heights along an axis, and edge vectors (rows less other rows), from the same matrices.
    up = torch.tensor([0.6, 0.0, 0.8])
    assert torch.allclose(skinner.heights(skinning, up), dense @ up, atol=1e-5)
    others = torch.tensor([1, 2, 201, 8, 151, 0])
    edges = model.skinner(ids, minus=others)(skinning)
    assert torch.allclose(edges, sparse - model.skinner(others)(skinning), atol=1e-5)
    assert edges.abs().max() > 0.1
    none = model.skinner(torch.zeros(0, dtype=torch.long))  # a term with no rows (no feet in contact)
    assert none(skinning).shape == (5, 0, 3) and none.heights(skinning, up).shape == (5, 0)


def test_fit_recovers_a_clip_through_ground_truth_correspondence():
    rig = tube_rig()
    truth = smooth_poses(rig)
    clip, truth_heads = pose_rig(rig, truth)
    # Exact matches: no space-time re-matching (it may trade a few exact matches for neighbours).
    config = MotionConfig(placement="none", device="cpu", rematch_rounds=0)
    result = fit_motion(rig, clip, np.arange(rig.n_vertices), config=config)
    assert result.rotations.shape == (16, 4, 4) and result.locations.shape == (16, 4, 3)
    assert result.normalized_residuals.max() < 2e-3
    assert np.abs(result.joint_positions - truth_heads).max() < 0.01 * rig.size
    fitted = matrix_from_quaternion(result.rotations)
    err = np.degrees(rotation_angle(np.swapaxes(fitted, -1, -2) @ truth[..., :3, :3]))
    assert np.median(err) < 2.5 and err.max() < 6.0  # thin tubes: twist is barely visible in the vertices
    assert np.allclose(result.root_location, truth[:, 0, :3, 3], atol=0.01 * rig.size)


def test_fit_ignores_a_fifth_of_wrong_matches():
    rig = tube_rig()
    clip, truth_heads = pose_rig(rig, smooth_poses(rig, seed=3))
    rng = np.random.default_rng(0)
    matches = np.arange(rig.n_vertices)
    wrong = rng.random(rig.n_vertices) < 0.2
    matches[wrong] = rng.integers(0, rig.n_vertices, wrong.sum())
    result = fit_motion(rig, clip, matches, config=MotionConfig(placement="none", device="cpu"))
    posed, _ = pose_rig(rig, result.local_matrices())
    good_error = np.linalg.norm(posed - clip, axis=-1)[:, ~wrong].mean() / rig.size
    assert good_error < 0.015, good_error
    assert np.abs(result.joint_positions - truth_heads).max() < 0.04 * rig.size


def test_twist_no_vertex_can_see_stays_at_rest():
    rig = tube_rig(thin_last=True)
    truth = smooth_poses(rig, seed=5, twist=False)
    clip, _ = pose_rig(rig, truth)
    result = fit_motion(rig, clip, np.arange(rig.n_vertices), config=MotionConfig(placement="none", device="cpu"))
    q = result.rotations[:, 3]  # the arm, whose vertices lie on its axis
    twist = np.degrees(2 * np.arctan2(np.abs(q[:, 2]), np.abs(q[:, 0])))  # spin about its Y axis
    assert twist.max() < 10.0, twist.max()


def test_scale_and_placement_are_estimated():
    rig = tube_rig()
    clip, _ = pose_rig(rig, smooth_poses(rig, frames=6))
    bigger = 2.5 * clip + np.array([10.0, -4.0, 3.0])  # same motion, 2.5x larger and elsewhere
    result = fit_motion(rig, bigger, np.arange(rig.n_vertices), config=MotionConfig(device="cpu"))
    assert abs(result.scale - 0.4) < 0.01
    # measured 0.0068 (0.0041 while a bone's jump limit was the sum of its and its parent's turns): every
    # bone of this 6-frame clip turns 25-28 deg a frame, which the limit measures 5-20 % low
    assert result.normalized_residuals.max() < 0.008


def test_align_pose_fits_one_static_shape():
    rig = tube_rig()
    truth = smooth_poses(rig, frames=8, amplitude=0.8, seed=7)[5:6]
    shape, truth_heads = pose_rig(rig, truth)
    result = align_pose(rig, shape[0], np.arange(rig.n_vertices), config=MotionConfig(placement="none", device="cpu"))
    assert result.rotations.shape == (1, 4, 4)
    assert np.abs(result.joint_positions - truth_heads).max() < 0.01 * rig.size


def test_cancel_between_steps_and_input_errors():
    rig = tube_rig()
    clip, _ = pose_rig(rig, smooth_poses(rig, frames=4))
    seen = []

    def cancel_later(fraction, message):
        seen.append(fraction)
        if len(seen) > 3:
            raise Cancelled()

    with pytest.raises(Cancelled):
        fit_motion(rig, clip, np.arange(rig.n_vertices), progress=cancel_later)
    assert seen == sorted(seen)
    with pytest.raises(ValueError, match="tubes"):
        fit_motion(rig, clip, np.arange(10))
    with pytest.raises(ValueError, match="indices"):
        fit_motion(rig, clip, np.full(rig.n_vertices, clip.shape[1]))
    with pytest.raises(ValueError, match="placement"):
        fit_motion(rig, clip, np.arange(rig.n_vertices), config=MotionConfig(placement="sideways"))
    with pytest.raises(ValueError, match="parents first"):
        Rig(["a", "b"], [1, -1], np.tile(np.eye(4), (2, 1, 1)), np.zeros((1, 3)), np.ones((1, 2)))


def test_ik_style_controls_are_attached_to_their_limb_ends():
    """A foot hanging from an unskinned root with its head at the end of the leg chain is found as attached
    to the leg's end bone; the leg itself (translating too) is not attached to its own ancestors."""
    from sa3df.motion.terms import attachments

    heads = [[0, 0, 0], [0, 1.0, 0], [0, 0.1, 0], [0, 0.1, 0]]  # root, leg (down to y=0.1), leg end, foot
    rest = np.array([_frame(np.eye(3), h) for h in heads])
    verts = np.array([[0.1, 0.9, 0], [-0.1, 0.5, 0], [0.1, 0.3, 0], [0.1, 0.05, 0], [0.2, 0.0, 0], [0, 0, 0.1]])
    weights = np.zeros((6, 4))
    weights[:3, 1], weights[3:, 3] = 1.0, 1.0
    rig = Rig(["root", "leg", "leg_end", "foot"], [-1, 0, 1, 0], rest, verts, weights)
    free = rig.translating_bones()
    assert 3 in free and 1 in free
    assert attachments(rig, free, 0.005).tolist() == [[3, 2]]
