"""Feet on the floor without Blender: the source's ground contacts (height + ground-relative speed), the
floor measures, and the fit keeping a target on its own floor when the source clip sinks below it."""

import numpy as np

from sa3df.motion.contacts import (floor_report, foot_sliding, leg_bones, rotation_jumps, source_contacts,
                                   swing_clearance)
from sa3df.motion.fit import MotionConfig, fit_motion
from sa3df.motion.rig import Rig
from sa3df.motion.skinning import pose_rig
from test_motion_fit import _rotation, smooth_poses, tube_rig

UP = np.array([0.0, 0.0, 1.0])


def _stepping_foot(frames=40, treadmill=0.0):
    """(T, 2, 3): a foot that stands for the first half of a cycle and swings (lifted, moving) for the
    second, plus a body point high above; ``treadmill`` moves everything backwards per frame (in place)."""
    t = np.arange(frames)
    swing = (t % 20) >= 10
    foot = np.zeros((frames, 3))
    foot[:, 0] = np.cumsum(np.where(swing, 0.1, 0.0)) - treadmill * t
    foot[:, 2] = np.where(swing, 0.1 * np.sin(np.pi * ((t % 20) - 10) / 10), 0.0)
    body = np.stack([foot[:, 0].mean() + 0 * t, 0 * t, 1.0 + 0 * t], axis=1).astype(float)
    return np.stack([foot, body], axis=1), swing


def test_contacts_are_low_and_move_with_the_ground():
    for treadmill in (0.0, 0.05):  # a walk with root motion, and one recorded in place
        clip, swing = _stepping_foot(treadmill=treadmill)
        clip = np.concatenate([clip, clip + [0.3, 0.2, 0.0]], axis=1)  # a second foot, in step (the ground)
        contact = source_contacts(clip, UP, height=1.0)
        assert not contact[:, 1].any()  # the body is never on the floor
        assert contact[~swing, 0].mean() > 0.9 and contact[swing, 0].mean() < 0.3, treadmill


def test_floor_report_measures_penetration_float_and_sliding():
    clip, _ = _stepping_foot()
    sunk = clip - [0.0, 0.0, 0.05]
    report = floor_report(sunk, UP, floor=0.0, height=1.0)
    assert np.isclose(report["penetration_max"], 0.05)
    # one foot: mid-swing it is the lowest point, 0.1 up, i.e. 0.05 above the floor
    assert np.isclose(report["float_max"], 0.05) and 0.0 < report["penetration_mean"] < 0.05
    planted = np.tile([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0]], (10, 1, 1))  # a foot on the floor, a head above
    skating = planted + np.arange(10)[:, None, None] * [0.02, 0.0, 0.0]
    assert foot_sliding(planted, 1.0) == 0.0 and np.isclose(foot_sliding(skating, 1.0), 0.02)
    # in place: three sole vertices ride a treadmill (0.02 per frame), a fourth skates at 0.05
    treadmill = np.tile([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.2, 0.0, 0.0], [0.3, 0.0, 0.0], [0.0, 0.0, 1.0]],
                        (10, 1, 1))
    treadmill[:, :4, 1] -= np.arange(10)[:, None] * [0.02, 0.02, 0.02, 0.05]
    assert np.isclose(foot_sliding(treadmill, 1.0), (3 * 0.02 + 0.05) / 4)
    assert np.isclose(foot_sliding(treadmill, 1.0, against_ground=True), 0.03 / 4)
    assert np.isclose(floor_report(treadmill, UP, floor=0.0, height=1.0)["ground_sliding"], 0.03 / 4)
    q = np.tile([1.0, 0.0, 0.0, 0.0], (3, 1, 1))
    q[2, 0] = [np.cos(np.radians(15)), np.sin(np.radians(15)), 0, 0]  # a 30 degree turn
    assert np.allclose(rotation_jumps(q)[:, 0], [0.0, 30.0])


def test_a_swinging_foot_keeps_its_matches_clearance_and_a_rolling_one_does_not():
    """Columns: a heel and a toe of foot bone 0, a sole vertex of foot bone 1. Frame 1: the toe stands while
    the heel's match rolls up (no clearance: its foot stands); the other foot swings, its match 0.05 up."""
    match_heights = np.array([[0.0, 0.0, 0.01], [0.02, 0.0, 0.06], [0.0, 0.0, 0.01]])
    mask = np.array([[1, 1, 1], [0, 1, 0], [1, 1, 1]], dtype=bool)
    clearance = swing_clearance(match_heights, mask, bones=np.array([0, 0, 1]), n_bones=2)
    assert np.allclose(clearance, [[0, 0, 0], [0, 0, 0.05], [0, 0, 0]])


def test_the_fit_keeps_the_target_on_its_own_floor():
    rig = tube_rig(tilt=0.0)  # upright along +Y
    up = np.array([0.0, 1.0, 0.0])
    poses = smooth_poses(rig, frames=12, amplitude=0.3, seed=2)
    poses[..., :3, 3] = 0.0  # the root stays put: the clip's lowest point stays at the rest floor
    clip, _ = pose_rig(rig, poses)
    floor, height = (rig.rest_vertices @ up).min(), np.ptp(rig.rest_vertices @ up)
    sunk = clip - 0.05 * height * up  # the source walks 5 % of the height below the target's floor
    ids = np.arange(rig.n_vertices)
    kept = fit_motion(rig, sunk, ids, config=MotionConfig(placement="origin", scale=1.0, fit_scale=False,
                                                          up=tuple(up), device="cpu", iterations=60, rematch_rounds=0))
    free = fit_motion(rig, sunk, ids, config=MotionConfig(placement="origin", scale=1.0, fit_scale=False,
                                                          up=tuple(up), device="cpu", iterations=60, rematch_rounds=0,
                                                          contact_weight=0.0))

    def lowest(result):
        verts, _ = pose_rig(rig, result.local_matrices())
        return floor_report(verts, up, floor, height)

    assert lowest(free)["penetration_max"] > 0.04  # without the floor terms it follows the source down
    report = lowest(kept)
    assert report["penetration_max"] < 0.01 and report["float_max"] < 0.01, report
    assert kept.normalized_residuals.mean() < 0.03


def test_feet_matched_above_the_sources_floor_still_stand_on_the_targets():
    """The cow's case: the target's lowest vertices are matched to source points up the leg (a short hoof
    against a long one). The frames' lowest point follows the whole source's, which stands on its floor, not
    those matches: the target is not lifted (it was, by 3-6 % of its height, while it followed the matches)."""
    rig = tube_rig(tilt=0.0)
    up = np.array([0.0, 1.0, 0.0])
    poses = smooth_poses(rig, frames=12, amplitude=0.2, seed=4)
    poses[..., :3, 3] = 0.0
    clip, _ = pose_rig(rig, poses)
    rest_h = rig.rest_vertices @ up
    floor, height = rest_h.min(), np.ptp(rest_h)
    ids = np.arange(rig.n_vertices)
    low = np.flatnonzero(rest_h - floor < 0.15 * height)
    ring_above = np.flatnonzero(np.isclose(rest_h, np.unique(rest_h)[2]))  # the third ring from the bottom
    ids[low] = ring_above[np.arange(len(low)) % len(ring_above)]
    result = fit_motion(rig, clip, ids, config=MotionConfig(placement="origin", scale=1.0, fit_scale=False,
                                                            up=tuple(up), device="cpu", iterations=60, rematch_rounds=0))
    verts, _ = pose_rig(rig, result.local_matrices())
    report = floor_report(verts, up, floor, height)
    assert report["float_max"] < 0.01 and report["penetration_max"] < 0.01, report


def test_leg_chains_end_below_the_hips_and_at_an_ik_foot():
    """The bones the penetration term may move: from the contacts up to the bone that also carries the
    body (excluded), for legs hanging from the hips and for an IK foot hanging from an unskinned root."""
    names = ["root", "hips", "spine", "thigh.L", "foot.L", "thigh.R", "foot.R", "ik_foot", "toe"]
    parents = [-1, 0, 1, 1, 3, 1, 5, 0, 7]
    weights = np.eye(len(names))[1:]  # one vertex per bone but the root (unskinned)
    rig = Rig(names, parents, np.tile(np.eye(4), (len(names), 1, 1)), np.zeros((len(weights), 3)), weights)
    feet = np.isin(names, ["foot.L", "foot.R"]).astype(float)
    assert [names[b] for b in np.flatnonzero(leg_bones(rig, feet))] == ["thigh.L", "foot.L", "thigh.R", "foot.R"]
    ik = np.isin(names, ["toe"]).astype(float)
    assert [names[b] for b in np.flatnonzero(leg_bones(rig, ik))] == ["ik_foot", "toe"]  # not the root


def test_jump_limit_is_the_turn_relative_to_the_parent():
    """A bone carried rigidly by a parent that turns 30 degrees in a frame turns by nothing of its own: its
    allowed jump stays at the floor (20 deg). The old limit, the sum of both skins' turns, allowed 60 deg,
    which let the robot's foot turn 27 deg where the man's turns 24."""
    import types

    import torch

    from sa3df.motion.skinning import TorchRig
    from sa3df.motion.terms import spin_limits

    rig = tube_rig()
    poses = np.tile(np.eye(4), (3, rig.n_bones, 1, 1))
    poses[1:, rig.root, :3, :3] = _rotation([1.0, 0.0, 0.0], np.radians(30))
    clip, _ = pose_rig(rig, poses)
    n = rig.n_vertices
    problem = types.SimpleNamespace(ids=torch.arange(n), n_data=n)
    limit = spin_limits(TorchRig(rig), problem, torch.ones(n), torch.as_tensor(clip / rig.size, dtype=torch.float32),
                        MotionConfig())
    degrees = np.degrees(np.arccos(1 - limit.numpy() / 4))  # spin = 4 (1 - cos angle)
    child = rig.bone_names.index("bone1")
    assert 30.0 <= degrees[0, rig.root] <= 36.0, degrees  # the measured 30 deg turn, with its margin
    assert np.allclose(degrees[0, child], 20.0, atol=0.1) and np.allclose(degrees[1], 20.0, atol=0.1), degrees


def test_the_motion_job_reports_sliding_against_the_ground_too():
    """A walk recorded in place: the whole body rides a treadmill (0.02 of its height a frame). The job's
    report (and the add-on's message) says the feet skate 0 against the ground, not 2 % a frame."""
    from types import SimpleNamespace

    from sa3df.service.motion_jobs import _feet

    foot = [[x, y, 0.0] for x in (0.0, 0.1) for y in (0.0, 0.1)]
    rig = Rig(["root"], [-1], np.eye(4)[None], np.array(foot + [[0.05, 0.05, 1.0]]), np.ones((5, 1)))
    basis = np.tile(np.eye(4), (6, 1, 1, 1))
    basis[:, 0, 0, 3] = -0.02 * np.arange(6)
    frames = rig.rest_vertices[None] + basis[:, 0, :3, 3][:, None]
    info = _feet(rig, SimpleNamespace(local_matrices=lambda: basis), frames, {"up": (0.0, 0.0, 1.0)})
    assert np.isclose(info["sliding"], 2.0) and np.isclose(info["source_sliding"], 2.0), info
    assert info["ground_sliding"] == 0.0 and info["source_ground_sliding"] == 0.0, info
