"""Helpers for tests and scripts that drive real Blender (the bpy module): import characters, pose,
export arrays, select objects and read what the add-on wrote. ``scripts/`` import it too."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np


_SCRATCH_DIRS: list[str] = []


def scratch_dir(prefix: str) -> str:
    """A new temporary folder, removed when the process exits: a Blender user folder with an installed
    extension holds its wheels (65 MB to 1.2 GB), and runs that left theirs behind filled a CI disk."""
    path = tempfile.mkdtemp(prefix=prefix)
    _SCRATCH_DIRS.append(path)
    return path


@atexit.register
def remove_scratch_dirs() -> None:
    """Remove every :func:`scratch_dir`; call it before an ``os._exit``, which skips atexit handlers."""
    while _SCRATCH_DIRS:
        shutil.rmtree(_SCRATCH_DIRS.pop(), ignore_errors=True)


def sandbox_blender_user(prefix: str = "sa3df-blender-user-") -> None:
    """Keep Blender's user folder (config, installed extensions) in a scratch folder unless the caller chose
    one with $BLENDER_USER_RESOURCES: `import bpy` otherwise writes to ~/.config/blender. Call it before
    importing bpy."""
    if not os.environ.get("BLENDER_USER_RESOURCES"):
        os.environ["BLENDER_USER_RESOURCES"] = scratch_dir(prefix)


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


EXTENSION_MODULE = "bl_ext.user_default.sa3df_tools"


def install_extension(cache_dir, **preferences):
    """Build the extension zip for this Blender's Python (only when sources changed) and install and enable
    it in headless Blender, unless it is already enabled; then set ``preferences`` and the cache folder.
    With $SA3DF_WORKER_PYTHON set (bpy 5.2 on Python 3.13, whose zip has no torch), the worker runs in that
    interpreter: the External Python backend. Returns the add-on's preferences."""
    import os

    import bpy

    import build_addon

    if EXTENSION_MODULE not in bpy.context.preferences.addons:
        zip_path = build_addon.ensure_built()
        result = bpy.ops.extensions.package_install_files(
            filepath=str(zip_path), repo="user_default", enable_on_install=True)
        assert result == {"FINISHED"}, f"installing {zip_path.name} failed: {result}"
    prefs = bpy.context.preferences.addons[EXTENSION_MODULE].preferences
    if os.environ.get("SA3DF_WORKER_PYTHON"):
        prefs.backend, prefs.external_python = "EXTERNAL", os.environ["SA3DF_WORKER_PYTHON"]
    for name, value in preferences.items():
        setattr(prefs, name, value)
    prefs.cache_dir = str(cache_dir)
    return prefs


def clear_scene():
    """Empty the scene's data without resetting preferences (that would disable the extension)."""
    import bpy

    for collection in (bpy.data.objects, bpy.data.meshes, bpy.data.armatures, bpy.data.actions,
                       bpy.data.cameras, bpy.data.materials):
        for item in list(collection):
            collection.remove(item)


def add_character(path: Path):
    """Import an FBX character into the current scene; returns (armature, its largest mesh)."""
    import bpy

    before = set(bpy.data.objects)
    bpy.ops.import_scene.fbx(filepath=str(path))
    new = [o for o in bpy.data.objects if o not in before]
    armature = next(o for o in new if o.type == "ARMATURE")
    return armature, max((o for o in new if o.type == "MESH"), key=lambda o: len(o.data.vertices))


def select(objects, active) -> None:
    """Select exactly ``objects`` and make ``active`` the active object."""
    import bpy

    for obj in bpy.context.view_layer.objects:
        obj.select_set(False)
    for obj in objects:
        obj.select_set(True)
    bpy.context.view_layer.objects.active = active


def mesh_from_vertices(name: str, vertices: np.ndarray, template):
    """A new mesh object with ``template``'s polygons (quads stay quads) and the given world vertices."""
    import bpy

    polygons = [tuple(p.vertices) for p in template.data.polygons]
    data = bpy.data.meshes.new(name)
    data.from_pydata(vertices.tolist(), [], polygons)
    obj = bpy.data.objects.new(name, data)
    bpy.context.scene.collection.objects.link(obj)
    return obj


def attribute(obj, name: str) -> np.ndarray:
    """Values of a point attribute: (N,) int32, or (N, 4) float32 for a colour."""
    attr = obj.data.attributes[name]
    width = 4 if attr.data_type == "FLOAT_COLOR" else 1
    values = np.empty(len(attr.data) * width, dtype=np.float32 if width == 4 else np.int32)
    attr.data.foreach_get("color" if width == 4 else "value", values)
    return values.reshape(-1, width) if width == 4 else values


def scene_state() -> dict:
    """Everything the add-on could write, per object."""
    import bpy

    state = {}
    for obj in bpy.data.objects:
        attrs = sorted(obj.data.attributes.keys()) if obj.type == "MESH" else []
        state[obj.name] = (attrs, sorted(obj.vertex_groups.keys()), [m.name for m in obj.modifiers], sorted(obj.keys()))
    return state


def dominant_bones(obj) -> np.ndarray:
    """(N,) name of each vertex's strongest deform group ('' when none)."""
    from sa3df_addon.mesh_io import vertex_group_weights

    names = [g.name for g in obj.vertex_groups]
    weights = vertex_group_weights(obj, names)
    out = np.array(names, dtype=object)[weights.argmax(axis=1)]
    out[weights.max(axis=1) <= 0] = ""
    return out


def import_into_scene(path: Path):
    """Import an FBX character into the current scene (no reset); returns (armature, its new actions)."""
    import bpy

    before_objects, before_actions = set(bpy.data.objects), set(bpy.data.actions)
    bpy.ops.import_scene.fbx(filepath=str(path))
    armature = next(o for o in bpy.data.objects if o not in before_objects and o.type == "ARMATURE")
    return armature, [a for a in bpy.data.actions if a not in before_actions]


def blender_and_rig_clips(armature, rig, frames):
    """(Blender's deformed vertices, the rig model's) of every mesh ``armature`` moves at ``frames``,
    both (T, N, 3) in the armature's space: the rig must reproduce what Blender shows."""
    import bpy

    from sa3df.motion.skinning import pose_rig
    from sa3df_addon import rig_io

    clip = rig_io.source_clip(armature, rig_io.moved_meshes(armature), frames, into=armature)
    basis = []
    for frame in frames:
        bpy.context.scene.frame_set(frame)
        basis.append(rig_io.pose_basis(armature, rig))
    return clip, pose_rig(rig, np.array(basis))[0]
