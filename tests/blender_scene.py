"""Helpers for tests that drive real Blender (the bpy module): import characters, pose, export arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def bpy_or_skip():
    import pytest

    return pytest.importorskip("bpy", reason="bpy (Blender as a module) is not installed")


def reset_scene():
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)


def import_character(path: Path):
    """Import an FBX/glTF character into a fresh scene. Returns (armature, [mesh objects])."""
    import bpy

    reset_scene()
    path = Path(path)
    if path.suffix.lower() == ".fbx":
        bpy.ops.import_scene.fbx(filepath=str(path))
    else:
        bpy.ops.import_scene.gltf(filepath=str(path))
    armatures = [o for o in bpy.data.objects if o.type == "ARMATURE"]
    meshes = [o for o in bpy.data.objects if o.type == "MESH"]
    return (armatures[0] if armatures else None), meshes


def set_action(armature, action_name_part: str):
    """Assign the first action whose name contains ``action_name_part``; returns it."""
    import bpy

    action = next(a for a in bpy.data.actions if action_name_part in a.name)
    armature.animation_data_create()
    armature.animation_data.action = action
    if hasattr(armature.animation_data, "action_slot") and action.slots:
        armature.animation_data.action_slot = action.slots[0]
    return action


def posed_vertices(mesh_obj, frame: int) -> np.ndarray:
    """World-space vertices of ``mesh_obj`` deformed at ``frame`` (N, 3)."""
    import bpy

    from sa3df_addon.mesh_io import mesh_arrays

    bpy.context.scene.frame_set(frame)
    return mesh_arrays(mesh_obj, evaluated=True)[0]
