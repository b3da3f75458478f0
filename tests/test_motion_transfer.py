"""Motion transfer between real characters (quaternius, CC0), read through Blender.

- identity: a character onto itself through vertex ids reproduces its walk;
- same skeleton (man -> woman): copying the man's pose-bone matrices onto the woman is the ground truth;
  the geometry-only transfer is scored by joint-position error / height against it, and so is a
  name-agnostic baseline (each woman bone copies the man's bone whose rest head is nearest);
- different skeletons: the target's skin tracks the source through the correspondence, planted feet do
  not skate more than the source's, and no bone flips between frames.

Numbers measured when these tests were written are in the comments next to the assertions.
"""

import numpy as np
import pytest

from blender_scene import bpy_or_skip
from motion_scenes import load_character, nearest_rest_correspondence, posed_world
from sa3df.motion.contacts import foot_sliding, rotation_jumps
from sa3df.motion.fit import MotionConfig, fit_motion
from sa3df.motion.rig import place_in_armature

pytestmark = pytest.mark.blender
MAN, WOMAN = "humanoids/quaternius_male_casual.fbx", "humanoids/quaternius_female_casual.fbx"
HUMAN = "humanoids/quaternius_animated_human.fbx"
HORSE, COW = "quadrupeds/quaternius_horse.fbx", "quadrupeds/quaternius_cow.fbx"
FOX, WOLF = "quadrupeds/quaternius_fox.glb", "quadrupeds/quaternius_wolf.glb"


def _size(character) -> float:
    """As the add-on's Transfer Motion: the rest skin's height (world Z)."""
    return character.height


def transfer(source, target, matches, weights, **config):
    """Fit the target to the source's clip (origins aligned, height ratio of the rest skins)."""
    frames = place_in_armature(source.clip, target.world, source.origin)
    settings = dict(placement="origin", scale=_size(target) / _size(source), fit_scale=False, device="cpu")
    settings.update(config)
    return fit_motion(target.rig, frames, matches, weights, MotionConfig(**settings))


def centred_joint_error(target, joints, truth, major_only: bool = False) -> float:
    """Mean distance / height between skinned bones' heads, each frame centred (removes root drift).

    ``major_only``: only bones carrying at least 1 % of the skin (16 of the woman's 28 skinned bones; the
    rest are fingers, thumbs and end bones of a few vertices each, which no surface match can resolve).
    """
    load = target.rig.weights.sum(0)
    own = load >= 0.01 * target.rig.n_vertices if major_only else load > 0
    a = joints[:, own] - joints[:, own].mean(1, keepdims=True)
    b = truth[:, own] - truth[:, own].mean(1, keepdims=True)
    return float(np.linalg.norm(a - b, axis=-1).mean() / target.height)


def nearest_bone_baseline(source, target) -> np.ndarray:
    """(T, Bt, 4, 4): each target bone copies the source bone whose rest head (normalised) is nearest."""
    from scipy.spatial import cKDTree

    def heads(c):
        h = c.rig.rest_matrices[:, :3, 3] @ c.world[:3, :3].T + c.world[:3, 3]
        return (h - (c.rest_world.min(0) + c.rest_world.max(0)) / 2) / c.height

    _, nearest = cKDTree(heads(source)).query(heads(target))
    return source.basis[:, nearest]


def feature_correspondence(source, target, rest_prior: float | None = None):
    """Surface-aware features (geometric base, test-time trained) matched target -> source as the motion
    job does (rest-pose proximity prior of weight ``rest_prior``, default the job's; the target's pieces
    joined where its rig joins them); non-mutual matches count half."""
    from sa3df.apps import match
    from sa3df.apps.landmarks import rig_piece_links
    from sa3df.core import mesh
    from sa3df.service.motion_jobs import REST_PRIOR
    from sa3df.features.pipeline import compute_surface_features
    from sa3df.features.settings import FeatureSettings

    meshes = [mesh.from_arrays(c.rest_world, c.rig.faces, name=n) for c, n in ((source, "source"), (target, "target"))]
    meshes[1].piece_links = rig_piece_links(meshes[1], target.rig.weights[meshes[1].input_index], target.rig.parents)
    result = compute_surface_features(meshes, FeatureSettings(steps=300, up_axis="z"))
    prior = REST_PRIOR if rest_prior is None else rest_prior
    matches, weights, _ = match.input_vertex_matches(*meshes, *(f.embedding for f in result.features),
                                                     rest_prior=prior, up="z")
    return matches, weights


@pytest.fixture(scope="module")
def man_and_woman(data_dir):
    bpy_or_skip()
    return load_character(str(data_dir / MAN), "Walk"), load_character(str(data_dir / WOMAN))


def test_identity_reproduces_the_walk(data_dir):
    bpy_or_skip()
    fox = load_character(str(data_dir / FOX), "Walk")
    result = transfer(fox, fox, np.arange(fox.rig.n_vertices), None, scale=None, fit_scale=True)
    verts, joints = posed_world(fox, result.local_matrices())
    truth_verts, truth_joints = posed_world(fox, fox.basis)
    assert abs(result.scale - 1.0) < 0.01
    # measured 0.0014 (vertex error 0.33 % and joint error 0.32 % of height below); space-time re-matching
    # may trade a few exact matches for neighbours where the start is still off by over two edge lengths
    assert result.normalized_residuals.max() < 0.005
    assert np.linalg.norm(verts - truth_verts, axis=-1).mean() / fox.height < 0.005
    assert centred_joint_error(fox, joints, truth_joints) < 0.01


def test_same_skeleton_feature_transfer_beats_nearest_bone_baseline(man_and_woman):
    man, woman = man_and_woman
    _, truth = posed_world(woman, man.basis)
    matches, weights = feature_correspondence(man, woman)
    result = transfer(man, woman, matches, weights)
    _, joints = posed_world(woman, result.local_matrices())
    _, baseline_joints = posed_world(woman, nearest_bone_baseline(man, woman))
    error = centred_joint_error(woman, joints, truth)
    baseline = centred_joint_error(woman, baseline_joints, truth)
    major = centred_joint_error(woman, joints, truth, major_only=True)
    baseline_major = centred_joint_error(woman, baseline_joints, truth, major_only=True)
    # measured 0.0084-0.0088 over training seeds 0-3 vs the baseline's 0.0106 (which is exact on 27 of the
    # 28 bones but sends Foot.R 15 % of the height astray); without the rest-pose prior in matching the
    # hand vertices match the forearms and the error was 0.0156
    assert error < 0.9 * baseline, (error, baseline)
    assert major < 0.6 * baseline_major, (major, baseline_major)  # measured 0.0068-0.0072 vs 0.018
    assert rotation_jumps(result.rotations).max() < 45.0  # measured 22 deg


def test_same_skeleton_transfer_with_feet_on_the_floor_keeps_its_joint_error(man_and_woman):
    """The job's way (up given: contact and floor terms on): the floor is kept without losing accuracy."""
    from sa3df.motion.contacts import floor_report

    man, woman = man_and_woman
    _, truth = posed_world(woman, man.basis)
    matches, weights = feature_correspondence(man, woman)
    result = transfer(man, woman, matches, weights, up=woman.up)
    verts, joints = posed_world(woman, result.local_matrices())
    # measured 0.0083 (fit seeds 0-3: 0.0077-0.0083), 0.0082 without the floor terms (test above);
    # 0.0090 while the penetration term could lift a toe by tilting the hips and spine and planted
    # vertices moved as their own matches did (rolls and skids included) instead of with the ground
    assert centred_joint_error(woman, joints, truth) <= 0.0087
    floor = floor_report(verts, (0, 0, 1), woman.rest_world[:, 2].min(), woman.height)
    # measured 0.03 % below, 0.26 % above; sliding 0.0375 vs the man's 0.0397
    assert floor["penetration_max"] <= 0.005 and floor["float_max"] <= 0.005, floor
    assert floor["sliding"] <= foot_sliding(man.clip, man.height)


def test_same_skeleton_geometric_transfer_beats_nearest_bone_baseline(man_and_woman):
    man, woman = man_and_woman
    _, truth = posed_world(woman, man.basis)
    matches, weights = nearest_rest_correspondence(man, woman)
    result = transfer(man, woman, matches, weights)
    _, joints = posed_world(woman, result.local_matrices())
    _, baseline_joints = posed_world(woman, nearest_bone_baseline(man, woman))
    error = centred_joint_error(woman, joints, truth)
    assert error < 0.02, error  # measured 0.0088 (baseline 0.0106)
    major = centred_joint_error(woman, joints, truth, major_only=True)
    baseline_major = centred_joint_error(woman, baseline_joints, truth, major_only=True)
    assert major < baseline_major, (major, baseline_major)  # measured 0.0072 vs 0.018


@pytest.mark.parametrize(
    "source_path,target_path,max_residual,max_float,max_jump",
    # measured (up given, the job's way): residual 0.015, 0.035, 0.014; lowest point within 0.02/0.15 %,
    # 0.07/0.31 % (the cow floated 5.9 % while its frames' lowest point followed its hooves' matches, which sit
    # up the horse's legs), 0.00/0.11 % of the height below/above the floor; largest jump 19.9 deg (22.7
    # while a bone's limit was the sum of its and its parent's turns; the man's own walk: 23.8), 19.9 deg (79
    # deg while a hoof matched to a line of points could take any turn), 19.1 deg
    [(MAN, HUMAN, 0.02, 0.01, 20.5), (HORSE, COW, 0.05, 0.01, 23.0), (FOX, WOLF, 0.025, 0.01, 20.0)],
)
def test_different_skeletons_keep_feet_on_the_floor_without_skating_or_jumps(
        data_dir, source_path, target_path, max_residual, max_float, max_jump):
    bpy_or_skip()
    from sa3df.motion.contacts import floor_report

    source = load_character(str(data_dir / source_path), "Walk")
    target = load_character(str(data_dir / target_path))
    matches, weights = nearest_rest_correspondence(source, target)
    result = transfer(source, target, matches, weights, up=target.up)
    verts, _ = posed_world(target, result.local_matrices())
    assert result.normalized_residuals.mean() < max_residual
    floor = floor_report(verts, (0, 0, 1), target.rest_world[:, 2].min(), target.height)
    assert floor["penetration_max"] <= 0.01 and floor["float_max"] <= max_float, floor
    assert floor["sliding"] <= 1.05 * foot_sliding(source.clip, source.height) + 0.002
    # the fit's limit: 20 degrees a frame, or what the source's matched skin turns (the horse's own walk has
    # a 41 degree jump, which the cow need not copy)
    assert rotation_jumps(result.rotations).max() <= max_jump


def test_target_keeps_its_heading_when_given_the_up_axis(data_dir):
    """The animated human faces +/-X where the man faces -Y: without an up axis the fit turns the human's
    root to face like the man; with world Z as up the source is turned instead."""
    bpy_or_skip()
    man, human = load_character(str(data_dir / MAN), "Walk"), load_character(str(data_dir / HUMAN))
    matches, weights = nearest_rest_correspondence(man, human)
    up = tuple(np.linalg.inv(human.world)[:3, :3] @ np.array([0.0, 0.0, 1.0]))

    def mean_root_yaw(result) -> float:
        root = human.rig.root
        rest = human.world[:3, :3] @ human.rig.rest_matrices[root, :3, :3]
        turned = rest @ result.local_matrices()[:, root, :3, :3] @ np.linalg.inv(rest)
        return float(np.degrees(np.arctan2(turned[:, 1, 0], turned[:, 0, 0])).mean())

    free = transfer(man, human, matches, weights)
    kept = transfer(man, human, matches, weights, up=up)
    assert abs(mean_root_yaw(free)) > 60  # measured -85
    assert abs(mean_root_yaw(kept)) < 20  # measured 6.5
    assert kept.normalized_residuals.mean() < 0.02


@pytest.mark.parametrize("source_path,target_path", [(MAN, HUMAN), (HORSE, COW), (FOX, WOLF)])
def test_different_skeletons_with_surface_features(data_dir, source_path, target_path):
    bpy_or_skip()
    source = load_character(str(data_dir / source_path), "Walk")
    target = load_character(str(data_dir / target_path))
    matches, weights = feature_correspondence(source, target)
    result = transfer(source, target, matches, weights)
    verts, _ = posed_world(target, result.local_matrices())
    # measured with the job's rest prior (residual, sliding vs source's, largest jump): human 0.009, 0.041
    # vs 0.040, 15.5 deg; cow 0.034, 0.006 vs 0.010, 19.8 deg; wolf 0.013, 0.033 vs 0.035, 14.7 deg
    assert result.normalized_residuals.mean() < 0.05
    assert foot_sliding(verts, target.height) <= 1.2 * foot_sliding(source.clip, source.height) + 0.002
    # the cow's back feet (6-8 vertices each) turned 60.8 deg in one frame before the spin limit stopped
    # trusting matches that lie near a line; the horse's own walk has a 41.1 deg jump
    assert rotation_jumps(result.rotations).max() < 25.0
