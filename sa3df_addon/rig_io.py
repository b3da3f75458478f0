"""Blender armatures and skinned meshes to :class:`sa3df.motion.rig.Rig` arrays, source clips to vertex arrays,
and fitted motion back to a new Action (Blender 4.2 legacy F-curves and 5.0 layered actions alike).

Spaces: a rig lives in its armature object's local space (``bone.matrix_local``, armature units). Source
clips are read in world space through the depsgraph and mapped into the *target* armature's space, which
reconciles object transforms, object scale and centimetre/metre rigs in one matrix.
"""

from __future__ import annotations

import bpy
import numpy as np
from mathutils import Euler, Quaternion

from sa3df.motion.rig import Rig, place_in_armature

from . import actions
from .mesh_io import bone_weights, mesh_arrays, mover, moved_meshes


def ordered_bones(armature) -> list:
    """The armature's bones, every parent before its children (depth-first from each root)."""
    order, stack = [], [b for b in reversed(armature.data.bones) if b.parent is None]
    while stack:
        bone = stack.pop()
        order.append(bone)
        stack.extend(reversed(bone.children))
    return order


def rig_from_objects(armature, meshes=None) -> Rig:
    """A :class:`Rig` (armature space) for ``armature`` and the ``meshes`` it moves (default: all of them,
    :func:`moved_meshes`), concatenated in order: skinned meshes with their vertex-group weights, rigid
    pieces weighted 1 to their parent bone. ``rig.extra`` lists ``meshes`` and their ``mesh_sizes``.

    Raises ``ValueError`` naming the object when it is not an armature, moves no mesh, or a given mesh is
    not moved by it. Preserve Volume (dual quaternions) is approximated as linear and reported in
    ``rig.extra['warnings']``.
    """
    if armature is None or armature.type != "ARMATURE":
        raise ValueError(f"Object '{getattr(armature, 'name', None)}' is not an armature")
    meshes = moved_meshes(armature) if meshes is None else list(meshes)
    if not meshes:
        raise ValueError(f"Armature '{armature.name}' moves no mesh: no mesh has an Armature modifier on it "
                         "or is parented to one of its bones")
    bones = ordered_bones(armature)
    index = {b.name: i for i, b in enumerate(bones)}
    verts, faces, weights, warnings, offset = [], [], [], [], 0
    for obj in meshes:
        v, f, w = _piece_arrays(armature, obj, bones, warnings)
        verts.append(v)
        faces.append(f + offset)
        weights.append(w)
        offset += len(v)
    constrained = [b.name for b in armature.pose.bones if any(c.enabled for c in b.constraints)]
    if constrained:
        warnings.append(f"bone constraints (e.g. on '{constrained[0]}') may override keyed poses")
    weights = np.concatenate(weights)
    if not weights.any():
        raise ValueError(f"Armature '{armature.name}' moves no vertex of its meshes: no vertex group names a "
                         "deform bone and no mesh is parented to a bone")
    return Rig(
        bone_names=[b.name for b in bones],
        parents=np.array([index[b.parent.name] if b.parent else -1 for b in bones]),
        rest_matrices=np.array([np.array(b.matrix_local) for b in bones]),
        rest_vertices=np.concatenate(verts),
        weights=weights,
        faces=np.concatenate(faces),
        name=armature.name,
        bone_tails=np.array([np.array(b.tail_local) for b in bones]),
        connected=np.array([bool(b.use_connect and b.parent) for b in bones]),
        extra={"mesh_sizes": [len(v) for v in verts], "meshes": [m.name for m in meshes], "warnings": warnings},
    )


def _piece_arrays(armature, obj, bones, warnings):
    """(rest vertices in armature space, triangles, (N, B) weights) of one mesh the armature moves."""
    weights = bone_weights(armature, obj, [b.name for b in bones]).astype(np.float64)
    v, f = mesh_arrays(obj, evaluated=False, world=False)  # undeformed, shape keys not applied
    # Armature space: mesh object -> world -> armature object (where the Armature modifier deforms).
    into_armature = np.linalg.inv(np.array(armature.matrix_world, dtype=np.float64)) @ np.array(obj.matrix_world)
    kind, detail = mover(obj, armature)
    if kind == "bone":
        # A rigid piece follows its bone's current pose: undo that pose to place it at rest.
        bone = armature.data.bones[detail]
        unpose = np.array(bone.matrix_local) @ np.linalg.inv(np.array(armature.pose.bones[detail].matrix))
        into_armature = unpose @ into_armature
    elif detail is not None and detail.use_vertex_groups and detail.use_deform_preserve_volume:
        warnings.append(f"'{obj.name}' uses Preserve Volume; the fit models linear blend skinning")
    return v @ into_armature[:3, :3].T + into_armature[:3, 3], f, weights


def source_clip(armature, meshes, frames, into=None, align_origins: bool = False) -> np.ndarray:
    """(T, N, 3) deformed vertices of ``meshes`` (concatenated) at each scene frame in ``frames``, in the
    local space of the armature object ``into`` (world space when None). With ``align_origins`` the source
    ``armature``'s origin is moved onto ``into``'s first, so the clip plays where the target stands (the
    fitter's "origin" placement). The scene frame is restored afterwards."""
    scene = bpy.context.scene
    keep = scene.frame_current, scene.frame_subframe
    out = []
    try:
        for frame in frames:
            scene.frame_set(int(frame))
            out.append(np.concatenate([mesh_arrays(m, evaluated=True)[0] for m in meshes]))
    finally:
        scene.frame_set(keep[0], subframe=keep[1])
    clip = np.stack(out)
    if into is None:
        return clip
    origin = np.array(armature.matrix_world.translation) if align_origins else None
    return place_in_armature(clip, np.array(into.matrix_world, dtype=np.float64), origin)


def pose_basis(armature, rig: Rig) -> np.ndarray:
    """(B, 4, 4) the current ``pose_bone.matrix_basis`` of each rig bone (rig order)."""
    return np.array([np.array(armature.pose.bones[name].matrix_basis) for name in rig.bone_names])


def action_frames(action) -> list[int]:
    """Integer frames spanned by an action's keys (its manual range when set)."""
    start, end = action.frame_range
    return list(range(int(round(start)), int(round(end)) + 1))


def bake_motion(armature, result, frames, action_name: str, assign: bool = True):
    """Write ``result`` (a :class:`sa3df.motion.fit.MotionResult` for ``armature``'s rig) into a NEW Action.

    Keys every rig bone's rotation in the bone's own ``rotation_mode`` (quaternion, axis-angle or Euler;
    the mode is never changed), its location (non-zero on the bones the fit may translate) and unit
    scale, one key per frame in ``frames``. The action is marked as the add-on's (:mod:`.actions`: Clear
    can remove it). Existing actions are left untouched; with ``assign`` the new
    action becomes the armature's active one, and the previously active action gets a fake user if it
    would otherwise be orphaned. On failure nothing is left behind. Returns the action.
    """
    frames = np.asarray(frames, dtype=np.float64)
    if len(frames) != len(result.rotations):
        raise ValueError(f"{len(frames)} frames given for a fit of {len(result.rotations)} frames")
    missing = [n for n in result.bone_names if n not in armature.pose.bones]
    if missing:
        raise ValueError(f"Armature '{armature.name}' has no bones named {missing[:3]}: fit on another rig?")
    action = bpy.data.actions.new(action_name)
    anim = armature.animation_data or armature.animation_data_create()
    previous, previous_slot = anim.action, getattr(anim, "action_slot", None)
    had_fake_user = previous.use_fake_user if previous is not None else False
    if previous is not None and previous.users == 1:
        previous.use_fake_user = True  # the user's action must survive losing its only user
    anim.action = action
    try:
        for b, name in enumerate(result.bone_names):
            pose_bone = armature.pose.bones[name]
            path, values = _rotation_channels(pose_bone, result.rotations[:, b])
            _key_channels(action, armature, f'pose.bones["{_escape(name)}"].{path}', values, frames, name)
            # Location and scale are keyed on every bone too (rest values where the fit has none): a bone
            # left un-keyed would keep whatever the previously playing action last set.
            bone_path = f'pose.bones["{_escape(name)}"]'
            _key_channels(action, armature, f"{bone_path}.location", result.locations[:, b], frames, name)
            _key_channels(action, armature, f"{bone_path}.scale", np.ones((len(frames), 3)), frames, name)
    except Exception:
        _restore(anim, previous, previous_slot)
        if previous is not None:
            previous.use_fake_user = had_fake_user
        bpy.data.actions.remove(action)
        raise
    actions.mark_transferred(action, armature, previous)
    if not assign:
        _restore(anim, previous, previous_slot)
        action.use_fake_user = True
    return action


def _restore(anim, action, slot) -> None:
    anim.action = action
    if action is not None and slot is not None and hasattr(anim, "action_slot"):
        anim.action_slot = slot


def _escape(name: str) -> str:
    return name.replace("\\", "\\\\").replace('"', '\\"')


def _rotation_channels(pose_bone, quats: np.ndarray) -> tuple[str, np.ndarray]:
    """(data path, (T, k) values) expressing quaternions (T, 4) in the pose bone's rotation mode."""
    mode = pose_bone.rotation_mode
    if mode == "QUATERNION":
        return "rotation_quaternion", quats
    if mode == "AXIS_ANGLE":
        values = []
        for q in quats:
            axis, angle = Quaternion(q).to_axis_angle()
            values.append((angle, *axis))
        return "rotation_axis_angle", np.array(values)
    values, previous = [], Euler((0.0, 0.0, 0.0), mode)
    for q in quats:  # compatible Eulers: no 360-degree jumps between neighbouring keys
        previous = Quaternion(q).to_euler(mode, previous)
        values.append(tuple(previous))
    return "rotation_euler", np.array(values)


def _key_channels(action, armature, data_path: str, values: np.ndarray, frames: np.ndarray, group: str) -> None:
    """One F-curve per column of ``values`` (T, k), filled in bulk with keys at ``frames``."""
    for index in range(values.shape[1]):
        if hasattr(action, "fcurve_ensure_for_datablock"):  # Blender 4.4+: layered actions and slots
            curve = action.fcurve_ensure_for_datablock(armature, data_path, index=index, group_name=group)
        else:  # Blender 4.2/4.3 legacy actions
            curve = action.fcurves.find(data_path, index=index) or action.fcurves.new(
                data_path, index=index, action_group=group
            )
        curve.keyframe_points.clear()
        curve.keyframe_points.add(len(frames))
        co = np.stack([frames, values[:, index]], axis=1).astype(np.float32)
        curve.keyframe_points.foreach_set("co", co.ravel())
        curve.keyframe_points.foreach_set("interpolation", np.full(len(frames), _LINEAR, dtype=np.int32))
        curve.update()


# Enum value of 'LINEAR' in FCurveKeyframePoint.interpolation (per-frame keys: no overshoot between them).
_LINEAR = 1
