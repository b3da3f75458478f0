"""Motion operators: Transfer Motion (source character's action -> new action on a target rig) and
Align Pose (pose a target rig like any mesh), both without a bone map.

Selection: the ACTIVE object is the source (an armature with an action, or one of its skinned meshes, for
Transfer Motion; any mesh for Align Pose); another selected armature (or one of its skinned meshes) is
the target. The backend job (``sa3df.service.motion_jobs``) matches the two skins with surface features and fits
the target's pose; the result is written only when the job succeeds: a NEW action (Transfer Motion) or the
target's current pose (Align Pose).
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import bpy
import numpy as np
from sa3df.service import protocol

from . import rig_io
from .mesh_io import armature_of, mesh_arrays
from .preferences import feature_settings, preferences
from .runner import BackendOperator, Request, UserError


def _target_armature(context, source_armature):
    targets = {armature_of(o) for o in context.selected_objects} - {None, source_armature}
    if len(targets) != 1:
        raise UserError("Select exactly one target character (an armature or its skinned mesh) besides "
                        f"the active source (found {len(targets)})")
    return targets.pop()


def _world_rest(rig, armature) -> np.ndarray:
    world = np.array(armature.matrix_world, dtype=np.float64)
    return rig.rest_vertices @ world[:3, :3].T + world[:3, 3]


def _height(vertices: np.ndarray) -> float:
    """A character's size for the source -> target scale: its height along world Z. Unlike the box diagonal
    it does not change with how the arms are held at rest: against the T-posed man the diagonal made the
    A-posed robot of tests/robot_rig.py 28 % too small for his walk, and its spine leaned 22 deg forward
    (7 deg with the heights; the man's own lean is 2-6 deg)."""
    return float(np.ptp(np.asarray(vertices)[:, 2]))


def _request(context, job: str, source_objects, source_rest, source_faces, frames, target_armature, apply, scale):
    target_meshes = rig_io.moved_meshes(target_armature)
    rig = rig_io.rig_from_objects(target_armature, target_meshes)
    target_rest = _world_rest(rig, target_armature)
    arrays = {**protocol.meshes_to_inputs([(source_rest, source_faces), (target_rest, rig.faces)]),
              protocol.SOURCE_FRAMES: frames,
              **protocol.rig_to_inputs(rig.parents, rig.rest_matrices, rig.rest_vertices, rig.weights, rig.faces,
                                       rig.connected)}
    if scale is None:
        scale = _height(target_rest) / max(_height(source_rest), 1e-12)
    world_up_in_target = np.linalg.inv(np.array(target_armature.matrix_world, dtype=np.float64))[:3, :3] @ (0, 0, 1)
    params = {"mesh_names": [source_objects[0].name, target_meshes[0].name], "bone_names": rig.bone_names,
              "up": [float(x) for x in world_up_in_target],
              "target_name": target_armature.name, "scale": scale, "placement": "origin",
              "features": feature_settings(context, train=context.scene.sa3df.train_on_selection)}
    objects = list(source_objects) + target_meshes
    counts = [len(o.data.vertices) for o in objects]
    return Request(job, arrays, params, [o.name for o in objects], counts, apply,
                   info={"target": target_armature.name, "warnings": rig.extra.get("warnings", [])})


def _result(job, bone_names):
    rotations = job.arrays[protocol.ROTATIONS].astype(np.float64)
    locations = job.arrays[protocol.LOCATIONS].astype(np.float64)
    if rotations.shape[1] != len(bone_names):
        raise UserError(f"the fit has {rotations.shape[1]} bones but the target has {len(bone_names)}")
    return SimpleNamespace(bone_names=bone_names, rotations=rotations, locations=locations)


def _feet_note(info: dict) -> str:
    if "sliding" not in info:
        return ""
    # Against the ground: a walk recorded in place has its planted feet ride a treadmill, which is no skating.
    return (f"; feet skate {info['ground_sliding']:.2f} % of its height per frame against the ground "
            f"(source {info['source_ground_sliding']:.2f} %), lowest point at most {info['penetration']:.2f} % "
            f"below / {info['float']:.2f} % above its floor")


class SA3DF_OT_transfer_motion(BackendOperator):
    """Give the selected target character a new action that moves it like the active character's action
    (no bone map: the two surfaces are matched)"""

    bl_idname = "sa3df.transfer_motion"
    bl_label = "Transfer Motion"

    def build_request(self, context) -> Request:
        source = armature_of(context.active_object)
        if source is None:
            raise UserError("Make the source character (its armature or skinned mesh) the active object")
        action = source.animation_data.action if source.animation_data else None
        if action is None:
            raise UserError(f"Source armature '{source.name}' has no active action to transfer")
        target = _target_armature(context, source)
        source_meshes = rig_io.moved_meshes(source)
        source_rig = rig_io.rig_from_objects(source, source_meshes)
        frames = rig_io.action_frames(action)
        clip = rig_io.source_clip(source, source_meshes, frames, into=target, align_origins=True)
        names = {"action": action.name, "target": target.name, "bones": None}
        timing = {"predicted": _predicted_seconds(context, source, target, len(frames)), "started": time.monotonic()}

        def apply(context, job, objects) -> str:
            armature = bpy.data.objects.get(names["target"])
            if armature is None or armature.type != "ARMATURE":
                raise UserError(f"Target armature '{names['target']}' is gone")
            _record_duration(timing["predicted"], timing["started"])
            result = _result(job, request.params["bone_names"])
            new = rig_io.bake_motion(armature, result, frames, f"{names['action']} → {armature.name}")
            notes = "; ".join(request.info.get("warnings") or [])
            return (f"New action '{new.name}' on '{armature.name}': {len(frames)} frames, mean fit distance "
                    f"{job.info.get('mean_residual', float('nan')):.1%} of its size{_feet_note(job.info)}"
                    + (f" ({notes})" if notes else ""))

        request = _request(context, protocol.TRANSFER_MOTION, source_meshes, _world_rest(source_rig, source),
                           source_rig.faces, clip, target, apply, scale=None)
        request.params["rest_prior"] = float(context.scene.sa3df.rest_prior)  # both skins are at rest
        return request


class SA3DF_OT_align_pose(BackendOperator):
    """Pose the selected target character like the active mesh (any shape: a statue, a scan, another
    character), without a bone map"""

    bl_idname = "sa3df.align_pose"
    bl_label = "Align Pose"

    def build_request(self, context) -> Request:
        shape = context.active_object
        if shape is None or shape.type != "MESH":
            raise UserError("Make the mesh whose pose you want the active object")
        target = _target_armature(context, armature_of(shape) if armature_of(shape) is not None else None)
        vertices, faces = mesh_arrays(shape, evaluated=True, world=True)
        from sa3df.motion.rig import place_in_armature

        frames = place_in_armature(vertices[None], np.array(target.matrix_world, dtype=np.float64))
        names = {"target": target.name, "shape": shape.name}

        def apply(context, job, objects) -> str:
            armature = bpy.data.objects.get(names["target"])
            if armature is None or armature.type != "ARMATURE":
                raise UserError(f"Target armature '{names['target']}' is gone")
            result = _result(job, request.params["bone_names"])
            set_pose(armature, result)
            return (f"Posed '{armature.name}' like '{names['shape']}' (mean fit distance "
                    f"{job.info.get('mean_residual', float('nan')):.1%} of its size)")

        request = _request(context, protocol.ALIGN_POSE, [shape], vertices, faces, frames, target, apply, scale=None)
        # A shape has no origin on the floor to align with, and its size in another pose says little about
        # the target's: let the fit place it by centroid and estimate the scale bone by bone.
        request.params.update(placement="centroid", scale=None)
        return request


# Seconds per training step per 1,000 vertices (both meshes), and per frame of the fit per 50 bones: the panel's
# estimate, from `bench/bench_motion.py --only job` on one CPU thread (the man's walk looped to 250 frames onto
# the woman subdivided to 5.6k vertices, 42 bones: correspondence 5.8 s, fit 13.0 s, then 15 % more for the
# leg-only floor term; this estimate 24.6 s).
FEATURE_SECONDS = 0.003
FIT_SECONDS_PER_FRAME = 0.075
FIXED_SECONDS = 3.0


# Measured seconds / estimated seconds of this session's last Transfer Motion: machines differ by far more
# than the constants' error (the bench's job took 29 s on one 2-core machine, 81 s on another of the same kind),
# so once a transfer has run the panel scales its estimate by what this machine took.
_MEASURED = {"ratio": None}


def transfer_estimate(context) -> str | None:
    """What Transfer Motion would do with the current selection and about how long it takes, or None
    when the selection is not one it takes."""
    source = armature_of(context.active_object)
    action = source.animation_data.action if source is not None and source.animation_data else None
    try:
        target = _target_armature(context, source) if action is not None else None
    except UserError:
        return None
    if target is None:
        return None
    frames = len(rig_io.action_frames(action))
    seconds = _predicted_seconds(context, source, target, frames)
    if _MEASURED["ratio"] is None:
        return f"{frames} frames onto {target.name}: about {seconds:.0f} s"
    return f"{frames} frames onto {target.name}: about {seconds * _MEASURED['ratio']:.0f} s (as timed here)"


def _predicted_seconds(context, source, target, frames: int) -> float:
    """The constants' estimate of a transfer's seconds (FEATURE_SECONDS, FIT_SECONDS_PER_FRAME)."""
    from sa3df.features.settings import EFFORT_STEPS

    vertices = sum(len(m.data.vertices) for a in (source, target) for m in rig_io.moved_meshes(a))
    prefs = preferences(context)
    effort = getattr(prefs, "effort", "fast") if context.scene.sa3df.train_on_selection else "off"
    steps = EFFORT_STEPS.get(effort, 0)
    return (FIXED_SECONDS + FEATURE_SECONDS * steps * vertices / 1000
            + FIT_SECONDS_PER_FRAME * frames * len(target.data.bones) / 50)


def _record_duration(predicted: float, started: float) -> None:
    """Keep what the transfer that just finished took against its estimate, for the next estimates."""
    _MEASURED["ratio"] = (time.monotonic() - started) / max(predicted, 1e-6)


def set_pose(armature, result) -> None:
    """Write frame 0 of ``result`` into the pose bones (rotation in each bone's own mode, location, unit
    scale). Not keyed: the pose shows until the next frame change of an animated armature."""
    from mathutils import Quaternion

    for b, name in enumerate(result.bone_names):
        bone = armature.pose.bones[name]
        q = Quaternion(result.rotations[0, b])
        if bone.rotation_mode == "QUATERNION":
            bone.rotation_quaternion = q
        elif bone.rotation_mode == "AXIS_ANGLE":
            axis, angle = q.to_axis_angle()
            bone.rotation_axis_angle = (angle, *axis)
        else:
            bone.rotation_euler = q.to_euler(bone.rotation_mode, bone.rotation_euler)
        bone.location = result.locations[0, b]
        bone.scale = (1.0, 1.0, 1.0)


classes = (SA3DF_OT_transfer_motion, SA3DF_OT_align_pose)
