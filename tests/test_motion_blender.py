"""Blender conventions of the motion path: the rig model deforms exactly like Blender's Armature modifier
(metre, centimetre and scaled/rotated armature objects), and baking writes a NEW action on the target only,
in each bone's own rotation mode, that Blender plays back as the fitted pose."""

import numpy as np
import pytest

from blender_scene import blender_and_rig_clips, bpy_or_skip, import_character, import_into_scene, reset_scene, set_action
from sa3df.motion.fit import MotionConfig, fit_motion

pytestmark = pytest.mark.blender


@pytest.mark.parametrize(
    "path",
    [
        "humanoids/quaternius_male_casual.fbx",  # metre-ish units, identity object transform
        "humanoids/quaternius_animated_human.fbx",  # armature object scaled 0.69 and rotated 90 degrees
        "quadrupeds/quaternius_fox.glb",  # armature object scale 100, several root bones (IK targets)
        "quadrupeds/khronos_fox.glb",  # centimetre rig (about 140 units long)
    ],
)
def test_rig_model_deforms_like_blender(data_dir, path):
    bpy_or_skip()
    from sa3df_addon import rig_io

    armature, _ = import_character(data_dir / path)
    action = set_action(armature, "Walk")
    rig = rig_io.rig_from_objects(armature)
    frames = rig_io.action_frames(action)[::4][:5]
    clip, verts = blender_and_rig_clips(armature, rig, frames)
    assert np.abs(clip[1:] - clip[:1]).max() > 0.01 * rig.size  # the clip really moves
    assert np.abs(verts - clip).max() < 1e-5 * rig.size
    assert all(p < i for i, p in enumerate(rig.parents))


def _fcurves(action, armature):
    """The F-curves of ``action`` for ``armature`` (layered actions in 4.4+, legacy list before)."""
    if hasattr(action, "layers") and action.layers:
        from bpy_extras import anim_utils

        return list(anim_utils.action_get_channelbag_for_slot(action, armature.animation_data.action_slot).fcurves)
    return list(action.fcurves)


def test_bake_writes_a_new_action_on_the_target_only(data_dir):
    bpy_or_skip()
    import bpy

    from sa3df_addon import rig_io

    reset_scene()
    man, man_actions = import_into_scene(data_dir / "humanoids/quaternius_male_casual.fbx")
    woman, woman_actions = import_into_scene(data_dir / "humanoids/quaternius_female_casual.fbx")
    walk = next(a for a in man_actions if "Walk" in a.name)
    set_action(man, walk.name)
    own_walk = next(a for a in woman_actions if "Walk" in a.name)
    set_action(woman, own_walk.name)
    woman.pose.bones["Head"].rotation_mode = "XYZ"  # an Euler bone must be keyed as Euler
    woman.pose.bones["Neck"].rotation_mode = "AXIS_ANGLE"
    man_keys = [tuple(k.co) for c in _fcurves(walk, man) for k in c.keyframe_points]
    actions_before = set(bpy.data.actions)

    frames = rig_io.action_frames(walk)[:10]
    target = rig_io.rig_from_objects(woman)
    source = rig_io.rig_from_objects(man)
    clip = rig_io.source_clip(man, rig_io.moved_meshes(man), frames, into=woman, align_origins=True)
    from scipy.spatial import cKDTree

    _, matches = cKDTree(source.rest_vertices).query(target.rest_vertices)  # same frame, same place
    result = fit_motion(target, clip, matches, config=MotionConfig(placement="origin", iterations=60, device="cpu"))
    name = f"{walk.name} → {woman.name}"
    action = rig_io.bake_motion(woman, result, frames, name)

    new = set(bpy.data.actions) - actions_before
    assert new == {action} and action.name == name
    assert woman.animation_data.action == action and man.animation_data.action == walk
    assert own_walk.name in bpy.data.actions and own_walk.use_fake_user  # the woman's walk survives
    assert [tuple(k.co) for c in _fcurves(walk, man) for k in c.keyframe_points] == man_keys
    assert action.users == 1
    curves = {(c.data_path, c.array_index): c for c in _fcurves(action, woman)}
    assert ('pose.bones["Hips"].rotation_quaternion', 0) in curves
    assert ('pose.bones["Head"].rotation_euler', 2) in curves
    assert ('pose.bones["Neck"].rotation_axis_angle', 3) in curves
    assert not any('"Head"].rotation_quaternion' in path for path, _ in curves)
    assert all(len(c.keyframe_points) == len(frames) for c in curves.values())
    assert woman.pose.bones["Head"].rotation_mode == "XYZ"

    # Blender plays the baked action back as the fitted pose.
    t = 7
    bpy.context.scene.frame_set(frames[t])
    played = rig_io.pose_basis(woman, target)
    assert np.abs(played - result.local_matrices()[t]).max() < 1e-4
