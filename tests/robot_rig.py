"""A humanoid robot the tests build in Blender: one box per bone, and a walk.

``build_robot(pieces=...)`` makes the armature and its meshes in the current scene:

- ``"rigid"``: every box is its own object parented to its bone (Blender's bone parenting), except the two
  hands, which are one skinned mesh (the issue's robot);
- ``"skinned"``: three skinned meshes under one Armature modifier each (body, arms, legs), every vertex
  weighted 1.0 to its box's bone;
- ``"none"``: the armature alone, moving no mesh.

Z is up, the robot faces -Y and stands on z = 0; ``legs`` scales the leg length. The walk ("RobotWalk",
24 frames) swings the legs and arms in opposition and moves the hips forward.
"""

from __future__ import annotations

import math

import numpy as np

# name: (head, tail, parent, half-width of its box)
BONES = {
    "Hips": ((0, 0, 1.0), (0, 0, 1.15), None, 0.16),
    "Spine": ((0, 0, 1.15), (0, 0, 1.5), "Hips", 0.15),
    "Head": ((0, 0, 1.5), (0, 0, 1.8), "Spine", 0.11),
    "UpperArm.L": ((0.24, 0, 1.45), (0.24, 0, 1.12), "Spine", 0.05),
    "Forearm.L": ((0.24, 0, 1.12), (0.24, 0, 0.85), "UpperArm.L", 0.045),
    "Hand.L": ((0.24, 0, 0.85), (0.24, 0, 0.72), "Forearm.L", 0.04),
    "UpperArm.R": ((-0.24, 0, 1.45), (-0.24, 0, 1.12), "Spine", 0.05),
    "Forearm.R": ((-0.24, 0, 1.12), (-0.24, 0, 0.85), "UpperArm.R", 0.045),
    "Hand.R": ((-0.24, 0, 0.85), (-0.24, 0, 0.72), "Forearm.R", 0.04),
    "Thigh.L": ((0.1, 0, 1.0), (0.1, 0, 0.55), "Hips", 0.07),
    "Shin.L": ((0.1, 0, 0.55), (0.1, 0, 0.1), "Thigh.L", 0.06),
    "Foot.L": ((0.1, 0, 0.1), (0.1, -0.18, 0.04), "Shin.L", 0.05),
    "Thigh.R": ((-0.1, 0, 1.0), (-0.1, 0, 0.55), "Hips", 0.07),
    "Shin.R": ((-0.1, 0, 0.55), (-0.1, 0, 0.1), "Thigh.R", 0.06),
    "Foot.R": ((-0.1, 0, 0.1), (-0.1, -0.18, 0.04), "Shin.R", 0.05),
}
SKINNED_GROUPS = {"Body": ("Hips", "Spine", "Head"),
                  "Arms": ("UpperArm.L", "Forearm.L", "Hand.L", "UpperArm.R", "Forearm.R", "Hand.R"),
                  "Legs": ("Thigh.L", "Shin.L", "Foot.L", "Thigh.R", "Shin.R", "Foot.R")}
WALK_FRAMES = 24


def _scaled(point, legs: float):
    """A rest point with everything below the hips (z < 1) stretched by ``legs``, the rest lifted."""
    x, y, z = point
    return (x, y, z * legs) if z <= 1.0 else (x, y, z - 1.0 + legs)


def box_vertices(head, tail, half: float, cuts: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(vertices, triangles) of a closed box around the segment head -> tail, ``cuts`` subdivisions a side."""
    import bmesh

    bm = bmesh.new()
    bmesh.ops.create_cube(bm, size=1.0)
    bmesh.ops.subdivide_edges(bm, edges=bm.edges[:], cuts=cuts, use_grid_fill=True)
    bmesh.ops.triangulate(bm, faces=bm.faces[:])
    unit = np.array([v.co[:] for v in bm.verts])
    tris = np.array([[v.index for v in f.verts] for f in bm.faces])
    bm.free()
    head, tail = np.asarray(head, float), np.asarray(tail, float)
    axis = tail - head
    length = np.linalg.norm(axis)
    y = axis / length
    x = np.cross(y, [0.0, 1.0, 0.0] if abs(y[1]) < 0.9 else [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    z = np.cross(x, y)
    local = unit * [2 * half, length + half, 2 * half]  # a little past both joints: no gaps when bent
    return head + axis / 2 + local @ np.stack([x, y, z]), tris


def _mesh_object(name: str, vertices, tris):
    import bpy

    data = bpy.data.meshes.new(name)
    data.from_pydata(vertices.tolist(), [], tris.tolist())
    obj = bpy.data.objects.new(name, data)
    bpy.context.scene.collection.objects.link(obj)
    return obj


def _armature(name: str, legs: float, location):
    import bpy

    data = bpy.data.armatures.new(name)
    armature = bpy.data.objects.new(name, data)
    armature.location = location
    bpy.context.scene.collection.objects.link(armature)
    bpy.context.view_layer.objects.active = armature
    bpy.ops.object.mode_set(mode="EDIT")
    for bone_name, (head, tail, parent, _) in BONES.items():
        bone = data.edit_bones.new(bone_name)
        bone.head, bone.tail = _scaled(head, legs), _scaled(tail, legs)
        if parent:
            bone.parent = data.edit_bones[parent]
            bone.use_connect = np.allclose(BONES[parent][1], head)
    bpy.ops.object.mode_set(mode="OBJECT")
    return armature


def _boxes(names, legs):
    parts = [box_vertices(_scaled(BONES[n][0], legs), _scaled(BONES[n][1], legs), BONES[n][3]) for n in names]
    return parts


def _skinned(armature, name: str, bones, legs: float):
    """One mesh of the boxes of ``bones``, each box's vertices weighted 1.0 to its bone."""
    parts = _boxes(bones, legs)
    offsets = np.cumsum([0] + [len(v) for v, _ in parts])
    vertices = np.concatenate([v for v, _ in parts]) + np.array(armature.location)
    tris = np.concatenate([t + o for (_, t), o in zip(parts, offsets)])
    obj = _mesh_object(name, vertices, tris)
    for bone, start, end in zip(bones, offsets[:-1], offsets[1:]):
        obj.vertex_groups.new(name=bone).add(list(range(int(start), int(end))), 1.0, "REPLACE")
    modifier = obj.modifiers.new("Armature", "ARMATURE")
    modifier.object = armature
    obj.parent = armature
    obj.matrix_parent_inverse = armature.matrix_world.inverted()
    return obj


def _rigid(armature, bone_name: str, legs: float):
    """A box parented to its bone (Blender's Bone parenting keeps its world place at rest)."""
    (vertices, tris), = _boxes([bone_name], legs)
    obj = _mesh_object(f"{armature.name}.{bone_name}", vertices + np.array(armature.location), tris)
    world = obj.matrix_world.copy()
    obj.parent, obj.parent_type, obj.parent_bone = armature, "BONE", bone_name
    import bpy

    bpy.context.view_layer.update()
    obj.matrix_world = world  # keep it where it was, whatever the bone's frame
    return obj


def _walk(armature, legs: float):
    """A 24-frame walk cycle keyed on pose bones (quaternions; hips location)."""
    import bpy
    from mathutils import Quaternion

    armature.animation_data_create()
    action = bpy.data.actions.new("RobotWalk")
    armature.animation_data.action = action
    swing = {"Thigh.L": 1, "Thigh.R": -1, "UpperArm.L": -0.6, "UpperArm.R": 0.6}
    for frame in range(1, WALK_FRAMES + 1):
        phase = 2 * math.pi * (frame - 1) / WALK_FRAMES
        bones = armature.pose.bones
        for name, sign in swing.items():
            bones[name].rotation_quaternion = Quaternion((1, 0, 0), sign * math.radians(28) * math.sin(phase))
        for side, sign in (("L", 1), ("R", -1)):
            bend = math.radians(35) * max(0.0, -sign * math.sin(phase + 0.6))
            bones[f"Shin.{side}"].rotation_quaternion = Quaternion((1, 0, 0), -bend)
        # Hips: local Y is world up, local Z world -Y (forward): forward at a steady pace, bobbing twice.
        bones["Hips"].location = (0, 0.02 * legs * math.cos(2 * phase), 0.05 * legs * (frame - 1))
        for bone in bones:
            bone.keyframe_insert("rotation_quaternion", frame=frame)
            bone.keyframe_insert("location", frame=frame)
    if hasattr(armature.animation_data, "action_slot") and getattr(action, "slots", None):
        armature.animation_data.action_slot = action.slots[0]
    return action


def build_robot(name: str = "Robot", pieces: str = "rigid", legs: float = 1.0, location=(0, 0, 0), walk=True):
    """(armature, its mesh objects) in the current scene (see the module docstring)."""
    armature = _armature(name, legs, location)
    meshes = []
    if pieces == "rigid":
        meshes = [_rigid(armature, b, legs) for b in BONES if not b.startswith("Hand")]
        meshes.append(_skinned(armature, f"{name}.Hands", ("Hand.L", "Hand.R"), legs))
    elif pieces == "skinned":
        meshes = [_skinned(armature, f"{name}.{part}", bones, legs) for part, bones in SKINNED_GROUPS.items()]
    elif pieces != "none":
        raise ValueError(f"pieces must be 'rigid', 'skinned' or 'none', not {pieces!r}")
    if walk:
        _walk(armature, legs)
    return armature, meshes
