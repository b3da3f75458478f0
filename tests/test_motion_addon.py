"""The add-on's motion operators end to end, as a user gets them: the extension zip is built and installed
into headless Blender, the backend runs in its worker process, and the result is a new action on the target
only (Transfer Motion) or the target's pose (Align Pose)."""

import sys
import time

import numpy as np
import pytest

from blender_scene import EXTENSION_MODULE, bpy_or_skip, clear_scene, import_into_scene, install_extension, select
from sa3df.service import client as worker_client

pytestmark = pytest.mark.blender
MODULE = EXTENSION_MODULE


@pytest.fixture(scope="module")
def addon(tmp_path_factory):
    """The built extension installed and enabled (reused when another test module already did it)."""
    bpy = bpy_or_skip()
    install_extension(tmp_path_factory.mktemp("sa3df-motion-cache"), extractor="geometric", effort="fast",
                      device="cpu")
    yield bpy
    worker_client.release_shared_client()


def test_transfer_motion_operator_bakes_a_new_action_on_the_target_only(addon, data_dir):
    bpy = addon
    from blender_scene import set_action
    from sa3df_addon import rig_io

    clear_scene()
    bpy.context.scene.sa3df.train_on_selection = True
    man, man_actions = import_into_scene(data_dir / "humanoids/quaternius_male_casual.fbx")
    horse, horse_actions = import_into_scene(data_dir / "quadrupeds/quaternius_horse.fbx")
    walk = set_action(man, next(a.name for a in man_actions if "Walk" in a.name))
    horse.animation_data_create()
    horse_played = horse.animation_data.action  # the importer's pick; it comes back after Clear
    actions_before = set(bpy.data.actions)
    bpy.context.scene.frame_set(5)
    man_pose = rig_io.pose_basis(man, rig_io.rig_from_objects(man))

    select([man, horse], man)
    estimate = sys.modules[f"{MODULE}.motion_ops"].transfer_estimate(bpy.context)  # what the panel shows
    assert estimate.startswith(f"{len(rig_io.action_frames(walk))} frames onto {horse.name}: about "), estimate
    started = time.monotonic()
    assert bpy.ops.sa3df.transfer_motion() == {"FINISHED"}
    took = time.monotonic() - started
    # Once a transfer has run, the panel's estimate is what this machine took (the same transfer again).
    timed = sys.modules[f"{MODULE}.motion_ops"].transfer_estimate(bpy.context)
    assert timed.endswith(" s (as timed here)"), timed
    assert 0.8 * took - 1 <= float(timed.split("about ")[1].split(" s")[0]) <= took + 1, (timed, took)

    new = set(bpy.data.actions) - actions_before
    assert len(new) == 1
    action = new.pop()
    assert action.name == f"{walk.name} → {horse.name}"
    assert horse.animation_data.action == action and man.animation_data.action == walk
    assert action.users == 1
    assert bpy.context.scene.frame_current == 5
    assert np.allclose(rig_io.pose_basis(man, rig_io.rig_from_objects(man)), man_pose)  # source untouched
    frames = rig_io.action_frames(walk)
    assert tuple(action.frame_range) == (frames[0], frames[-1])
    # The horse now moves: its skin differs between two frames of the new action.
    meshes = rig_io.moved_meshes(horse)
    clip = rig_io.source_clip(horse, meshes, [frames[0], frames[len(frames) // 2]])
    assert np.abs(clip[1] - clip[0]).max() > 0.02 * np.ptp(clip[0], axis=0).max()

    # Clear takes the transferred action back (unassigned and deleted); the user's actions stay, even with
    # the source selected too, and so does an action the user made for the horse himself.
    own = bpy.data.actions.new("HorseOwn")
    own.use_fake_user = True
    transferred = action.name
    select([man, horse], man)
    assert bpy.ops.sa3df.clear(remove_actions=True) == {"FINISHED"}
    assert transferred not in {a.name for a in bpy.data.actions}
    assert horse.animation_data.action == horse_played and man.animation_data.action == walk
    assert set(bpy.data.actions) == actions_before | {own}


def test_transfer_motion_refuses_a_target_armature_that_moves_no_mesh(addon, data_dir):
    bpy = addon
    from blender_scene import set_action
    from robot_rig import build_robot

    clear_scene()
    man, man_actions = import_into_scene(data_dir / "humanoids/quaternius_male_casual.fbx")
    set_action(man, next(a.name for a in man_actions if "Walk" in a.name))
    bare, _ = build_robot("Bare", pieces="none", walk=False)
    actions_before = set(bpy.data.actions)
    select([man, bare], man)
    with pytest.raises(RuntimeError, match="'Bare' moves no mesh"):  # bpy.ops raises the operator's report
        bpy.ops.sa3df.transfer_motion()
    assert set(bpy.data.actions) == actions_before


def test_align_pose_operator_poses_the_target_like_a_mesh(addon, data_dir):
    bpy = addon
    from blender_scene import set_action
    from sa3df_addon import rig_io

    clear_scene()
    bpy.context.scene.sa3df.train_on_selection = True
    horse, horse_actions = import_into_scene(data_dir / "quadrupeds/quaternius_horse.fbx")
    set_action(horse, next(a.name for a in horse_actions if "Walk" in a.name))
    bpy.context.scene.frame_set(8)
    shape_mesh = rig_io.moved_meshes(horse)[0]
    shape = shape_mesh.copy()
    shape.data = bpy.data.meshes.new_from_object(shape_mesh.evaluated_get(bpy.context.evaluated_depsgraph_get()))
    shape.modifiers.clear()
    shape.parent = None
    shape.matrix_world = shape_mesh.matrix_world
    bpy.context.collection.objects.link(shape)
    horse.animation_data.action = None  # the target starts at rest
    for bone in horse.pose.bones:
        bone.rotation_quaternion = (1, 0, 0, 0)
        bone.location = (0, 0, 0)
    bpy.context.view_layer.update()

    select([shape, horse], shape)
    assert bpy.ops.sa3df.align_pose() == {"FINISHED"}
    bpy.context.view_layer.update()
    posed = rig_io.source_clip(horse, [shape_mesh], [bpy.context.scene.frame_current])[0]
    target = np.array([shape.matrix_world @ v.co for v in shape.data.vertices])
    size = np.linalg.norm(np.ptp(target, axis=0))
    # The rig keeps its place (placement by centroid): compare shapes with their centres on each other.
    error = np.linalg.norm((posed - posed.mean(0)) - (target - target.mean(0)), axis=1).mean() / size
    assert error < 0.03, error  # measured: see the report


def test_transfer_motion_operator_man_to_woman_beats_nearest_bone_baseline(addon, data_dir):
    """The issue's same-skeleton check through the installed extension: the woman's new walk against the
    man's pose-bone matrices copied onto her (the ground truth), and against the nearest-bone baseline."""
    bpy = addon
    pytest.importorskip("torch", reason="the baseline fits in the test process (bpy 5.2: no torch on Python 3.13)")
    from blender_scene import set_action
    from motion_scenes import Character, posed_world
    from sa3df_addon import rig_io
    from test_motion_transfer import centred_joint_error, nearest_bone_baseline

    clear_scene()
    bpy.context.scene.sa3df.train_on_selection = True
    assert bpy.context.scene.sa3df.rest_prior == pytest.approx(0.2)
    man, man_actions = import_into_scene(data_dir / "humanoids/quaternius_male_casual.fbx")
    woman, _ = import_into_scene(data_dir / "humanoids/quaternius_female_casual.fbx")
    walk = set_action(man, next(a.name for a in man_actions if "Walk" in a.name))
    woman.animation_data_create()
    woman.animation_data.action = None
    select([man, woman], man)
    assert bpy.ops.sa3df.transfer_motion() == {"FINISHED"}

    def character(armature):
        rig = rig_io.rig_from_objects(armature)
        world = np.array(armature.matrix_world, dtype=np.float64)
        frames = rig_io.action_frames(walk)
        basis = []
        for frame in frames:
            bpy.context.scene.frame_set(frame)
            basis.append(rig_io.pose_basis(armature, rig))
        return Character(rig, world, frames, None, np.array(basis), rig.rest_vertices @ world[:3, :3].T + world[:3, 3])

    source, target = character(man), character(woman)
    _, truth = posed_world(target, source.basis)
    _, joints = posed_world(target, target.basis)
    _, baseline = posed_world(target, nearest_bone_baseline(source, target))
    error, baseline_error = centred_joint_error(target, joints, truth), centred_joint_error(target, baseline, truth)
    print(f"man -> woman through the add-on: joint error {error:.2%} of height, nearest-bone baseline "
          f"{baseline_error:.2%}")
    assert error < 0.9 * baseline_error, (error, baseline_error)  # measured: see the report


def test_transfer_motion_onto_a_robot_of_rigid_pieces_keeps_it_upright(addon, data_dir):
    """The man's walk onto the robot of bone-parented boxes through the installed extension. Read from the
    scene, its vertices differ from the in-process tests' by ~1e-8; that once flipped a tie between box
    corners, paired its head with the man's hand and leaned its spine 53 degrees on average (7 in process)."""
    bpy = addon
    from blender_scene import set_action
    from robot_rig import build_robot

    clear_scene()
    man, man_actions = import_into_scene(data_dir / "humanoids/quaternius_male_casual.fbx")
    set_action(man, next(a.name for a in man_actions if "Walk" in a.name))
    robot, _ = build_robot("Robot", pieces="rigid", walk=False)
    select([man, robot], man)
    assert bpy.ops.sa3df.transfer_motion() == {"FINISHED"}
    start, end = (int(f) for f in robot.animation_data.action.frame_range)
    leans = []
    for frame in range(start, end + 1, max(1, (end - start) // 12)):
        bpy.context.scene.frame_set(frame)
        world = np.array(robot.matrix_world)
        spine, head = (world[:3, :3] @ np.array(robot.pose.bones[b].head) for b in ("Spine", "Head"))
        axis = (head - spine) / np.linalg.norm(head - spine)
        leans.append(np.degrees(np.arccos(np.clip(axis[2], -1, 1))))
    assert np.mean(leans) < 15 and np.max(leans) < 25, leans  # measured 7.5 / 12.8 in the job replayed
