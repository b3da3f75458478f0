"""Blender meshes to arrays and back, in bulk (foreach_get/foreach_set, no per-vertex Python loops)."""

from __future__ import annotations

import bpy
import numpy as np


def mesh_arrays(obj, evaluated: bool = True, world: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(vertices (N, 3) float64, triangles (T, 3) int64) of a mesh object.

    ``evaluated`` applies modifiers and armature deformation as the depsgraph sees them now;
    ``world`` applies the object's world matrix. Vertex order is the object's own, so results map
    back onto its vertices one to one. Raises ``ValueError`` when modifiers change the vertex count
    (e.g. Subdivision), since results could then not be written back to the user's vertices.
    """
    if obj.type != "MESH":
        raise ValueError(f"Object '{obj.name}' is a {obj.type.lower()}, not a mesh")
    source = obj
    if evaluated:
        source = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    mesh = source.to_mesh()
    try:
        n = len(mesh.vertices)
        if evaluated and n != len(obj.data.vertices):
            raise ValueError(
                f"Mesh '{obj.name}': modifiers change its vertex count ({len(obj.data.vertices)} -> {n}); "
                "turn off 'Use Modifiers' or apply the topology-changing modifiers"
            )
        vertices = np.empty(n * 3, dtype=np.float64)
        mesh.vertices.foreach_get("co", vertices)
        vertices = vertices.reshape(n, 3)
        mesh.calc_loop_triangles()
        tris = np.empty(len(mesh.loop_triangles) * 3, dtype=np.int64)
        mesh.loop_triangles.foreach_get("vertices", tris)
    finally:
        source.to_mesh_clear()
    if world:
        matrix = np.array(obj.matrix_world, dtype=np.float64)
        vertices = vertices @ matrix[:3, :3].T + matrix[:3, 3]
    return vertices, tris.reshape(-1, 3)


def vertex_group_weights(obj, names: list[str]) -> np.ndarray:
    """(N, K) float32 weights of ``obj``'s vertex groups ``names`` (0 where a vertex is not in a group).

    Blender has no bulk getter for deform weights, so this walks each vertex's group list once
    (O(N × influences) Python steps: ~0.1 s per 100k influences).
    """
    column = {obj.vertex_groups[name].index: k for k, name in enumerate(names) if name in obj.vertex_groups}
    weights = np.zeros((len(obj.data.vertices), len(names)), dtype=np.float32)
    for vertex in obj.data.vertices:
        for element in vertex.groups:
            k = column.get(element.group)
            if k is not None:
                weights[vertex.index, k] = element.weight
    return weights


def vertex_group_labels(objects: list, min_weight: float = 0.5, skip=()) -> tuple[np.ndarray, list[str]]:
    """Hard labels from the vertex groups of ``objects`` (the pieces of one character, concatenated) except
    those named in ``skip``: (N,) int32 index of each vertex's strongest group (-1 where no group reaches
    ``min_weight``) and the group names (of all pieces, first seen first) in label order."""
    names = list(dict.fromkeys(g.name for obj in objects for g in obj.vertex_groups if g.name not in set(skip)))
    if not names:
        had = sum(len(obj.vertex_groups) for obj in objects)
        ignored = f" (besides {len(skip)} written by the add-on)" if had else ""
        raise ValueError(f"Object '{objects[0].name}' has no vertex groups to transfer{ignored}")
    weights = np.concatenate([vertex_group_weights(obj, names) for obj in objects])
    labels = weights.argmax(axis=1).astype(np.int32)
    labels[weights.max(axis=1) < min_weight] = -1
    return labels, names


def bone_weights(armature, obj, names: list[str]) -> np.ndarray:
    """(N, K) how much each bone in ``names`` of ``armature`` moves each vertex of the mesh ``obj``: the vertex
    groups of its deform bones when skinned (none when its Armature modifier ignores vertex groups), 1.0 to
    the bone a rigid piece hangs from. Raises ``ValueError`` when the armature does not move ``obj``."""
    how = mover(obj, armature)
    if how is None:
        raise ValueError(f"Mesh '{obj.name}' is not moved by '{armature.name}' (no Armature modifier using it, "
                         "not parented to one of its bones)")
    kind, detail = how
    weights = np.zeros((len(obj.data.vertices), len(names)), dtype=np.float32)
    if kind == "bone":
        if detail in names:
            weights[:, names.index(detail)] = 1.0
    elif detail is None or detail.use_vertex_groups:
        deform = [k for k, n in enumerate(names) if n in armature.data.bones and armature.data.bones[n].use_deform]
        weights[:, deform] = vertex_group_weights(obj, [names[k] for k in deform])
    return weights


def armature_of(obj):
    """The armature that moves ``obj`` (itself when it is one): an Armature modifier's, else the armature
    it hangs from (bone or armature parenting, through any chain of parents), else None."""
    if obj is None:
        return None
    if obj.type == "ARMATURE":
        return obj
    modifier = next((m for m in obj.modifiers if m.type == "ARMATURE" and m.object is not None), None)
    if modifier is not None:
        return modifier.object
    link = obj
    while link.parent is not None:
        if link.parent.type == "ARMATURE" and link.parent_type in ("BONE", "ARMATURE"):
            return link.parent
        link = link.parent
    return None


def moved_meshes(armature) -> list:
    """Every mesh object ``armature``'s bones move, in name order: skinned ones (an Armature modifier on it,
    or armature-deform parenting) and rigid pieces (parented to one of its bones, directly or through other
    objects). Together they are one character."""
    found = [obj for obj in bpy.data.objects if obj.type == "MESH" and mover(obj, armature) is not None]
    return sorted(found, key=lambda o: o.name)


def mover(obj, armature):
    """How ``armature`` moves the mesh ``obj``: ("skin", modifier or None) for skinning by vertex groups,
    ("bone", bone name) for a rigid piece, or None when it does not."""
    modifier = next((m for m in obj.modifiers if m.type == "ARMATURE" and m.object == armature), None)
    if modifier is not None:
        return "skin", modifier
    if obj.parent == armature and obj.parent_type == "ARMATURE":
        return "skin", None
    link = obj
    while link.parent is not None:
        if link.parent == armature:
            bone = link.parent_bone if link.parent_type == "BONE" else ""
            return ("bone", bone) if bone in armature.data.bones else None
        link = link.parent
    return None
