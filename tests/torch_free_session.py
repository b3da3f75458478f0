"""A fresh Blender session for test_addon_torch_free: enable the built extension, press every button, and
after each one note whether torch got into this (Blender's) process. Writes a JSON report to argv[1].

Run by the test in its own interpreter: the pytest process itself may hold torch from other tests.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent
sys.path[:0] = [str(TESTS), str(TESTS.parent)]

from blender_scene import sandbox_blender_user  # noqa: E402

sandbox_blender_user("sa3df-torch-free-")
import bpy  # noqa: E402

from blender_scene import (  # noqa: E402
    EXTENSION_MODULE, clear_scene, import_into_scene, install_extension, remove_scratch_dirs, scratch_dir, select,
    set_action,
)

STEPS: list[dict] = []
START = time.perf_counter()


def note(step: str, outcome) -> None:
    STEPS.append({"step": step, "outcome": sorted(outcome) if isinstance(outcome, set) else outcome,
                  "torch": "torch" in sys.modules, "at_seconds": round(time.perf_counter() - START, 1)})


def press(name: str, **kwargs) -> None:
    """Run ``bpy.ops.sa3df.<name>``; an operator that reports an error is noted as "error: ..."."""
    try:
        note(name, getattr(bpy.ops.sa3df, name)(**kwargs))
    except RuntimeError as error:
        note(name, f"error: {str(error).strip()[:300]}")


def short_clip(armature, action, frames=(1, 6, 11)) -> None:
    """A new three-key action with the walk's poses at ``frames`` (the motion fit is the slow step; this only
    needs it to run)."""
    poses = []
    for frame in frames:
        bpy.context.scene.frame_set(frame)
        poses.append({bone.name: bone.matrix_basis.copy() for bone in armature.pose.bones})
    armature.animation_data.action = bpy.data.actions.new(f"{action.name} (short)")
    for key, pose in enumerate(poses, start=1):
        for bone in armature.pose.bones:
            bone.matrix_basis = pose[bone.name]
            bone.keyframe_insert("rotation_quaternion" if bone.rotation_mode == "QUATERNION" else "rotation_euler",
                                 frame=key)
            bone.keyframe_insert("location", frame=key)
    bpy.context.scene.frame_set(1)


def scene(data: Path) -> dict:
    """The man (walking) and the woman, and a weightless copy of her body for skin weights and pose."""
    clear_scene()
    man, man_actions = import_into_scene(data / "humanoids/quaternius_male_casual.fbx")
    woman, _ = import_into_scene(data / "humanoids/quaternius_female_casual.fbx")
    short_clip(man, set_action(man, next(a.name for a in man_actions if "Walk" in a.name)))
    woman.animation_data_create()
    woman.animation_data.action = None
    bodies = {arm: max((o for o in bpy.data.objects if o.type == "MESH" and o.find_armature() == arm),
                       key=lambda o: len(o.data.vertices)) for arm in (man, woman)}
    target = bpy.data.objects.new("Target", bodies[woman].data.copy())
    target.matrix_world = bodies[woman].matrix_world.copy()
    bpy.context.scene.collection.objects.link(target)
    for group in list(target.vertex_groups):
        target.vertex_groups.remove(group)
    return {"man": man, "woman": woman, "man_body": bodies[man], "woman_body": bodies[woman], "target": target}


def main(report_path: str, data: str) -> None:
    prefs = install_extension(scratch_dir("sa3df-cache-"), extractor="geometric", effort="off",
                              device="cpu")
    note("enabled", EXTENSION_MODULE in bpy.context.preferences.addons)
    o = scene(Path(data))
    settings = bpy.context.scene.sa3df
    settings.part_source, settings.part_count = "KMEANS", 4
    press("check_backend")
    select([o["man_body"]], o["man_body"])
    press("compute_features")
    select([o["man_body"], o["woman_body"]], o["man_body"])
    press("show_correspondence")
    press("segment_parts")
    select([o["man_body"], o["target"]], o["man_body"])
    press("transfer_skin_weights")
    select([o["man"], o["woman"]], o["man"])
    press("transfer_motion")
    select([o["target"], o["woman"]], o["target"])
    press("align_pose")
    press("cancel_job")
    press("clear")
    press("release_worker")
    backend, prefs.backend = prefs.backend, "MANAGED"
    prefs.managed_python, prefs.managed_wheels = "/nonexistent/python3", scratch_dir("wheels-")
    press("install_backend")  # no such base Python: fails at once, saying why
    prefs.backend = backend
    select([o["man_body"]], o["man_body"])
    press("compute_features")  # still usable afterwards
    from sa3df.service.client import release_shared_client

    release_shared_client()
    Path(report_path).write_text(json.dumps({"blender": bpy.app.version_string, "steps": STEPS}, indent=1))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
    sys.stdout.flush()
    remove_scratch_dirs()
    os._exit(0)  # bpy 4.2 as a module can crash in its exit handlers after the FBX importer
