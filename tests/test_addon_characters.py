"""An armature's meshes are one character for Show Correspondence, Segment Parts and Transfer Skin Weights,
through the installed extension (base features, no training): the robot of tests/robot_rig.py, 14 boxes
parented to bones plus one skinned mesh of its hands, selected by its armature or by one of its pieces.
Every piece gets its own result; the user's own data stays as it was."""

from __future__ import annotations

import numpy as np
import pytest

from blender_scene import attribute, bpy_or_skip, clear_scene, dominant_bones, select
from robot_rig import BONES

pytestmark = pytest.mark.blender
LIMBS = {"arm": ("UpperArm", "Forearm", "Hand"), "leg": ("Thigh", "Shin", "Foot"), "body": ("Hips", "Spine", "Head")}


def _limb(bone: str) -> str:
    return next(limb for limb, parts in LIMBS.items() if bone.split(".")[0] in parts)


def _robots():
    """The rigid-piece robot, and a second one 3 m aside made of three skinned meshes."""
    from robot_rig import build_robot

    clear_scene()
    rigid, pieces = build_robot("Robot", pieces="rigid", walk=False)
    skinned, meshes = build_robot("Twin", pieces="skinned", walk=False, location=(3.0, 0.0, 0.0))
    return rigid, pieces, skinned, meshes


def _piece_bones(pieces) -> np.ndarray:
    """(N,) the bone moving each vertex of the pieces, concatenated in order (a rigid piece: its parent)."""
    return np.concatenate([np.full(len(p.data.vertices), p.parent_bone, dtype=object) if p.parent_bone
                           else dominant_bones(p) for p in pieces])


def test_show_correspondence_matches_every_piece_of_both_characters(addon):
    bpy = bpy_or_skip()
    from sa3df_addon.mesh_io import moved_meshes

    rigid, _, skinned, meshes = _robots()
    pieces = moved_meshes(rigid)
    assert len(pieces) == 14  # 13 bone-parented boxes and the skinned hands
    paint = pieces[0].data.attributes.new("user_paint", "FLOAT", "POINT")
    paint.data.foreach_set("value", [0.5] * len(pieces[0].data.vertices))
    select([rigid, meshes[2]], rigid)  # the source by its armature, the target by one of its three meshes
    assert bpy.ops.sa3df.show_correspondence() == {"FINISHED"}

    for piece in pieces + meshes:
        assert attribute(piece, "sa3df_correspondence").shape == (len(piece.data.vertices), 4), piece.name
    source_bones = _piece_bones(pieces)
    matched, own = [], []
    for mesh in meshes:
        index = attribute(mesh, "sa3df_match_index")
        assert index.min() >= 0 and index.max() < len(source_bones)
        matched += [_limb(b) for b in source_bones[index]]
        own += [_limb(b) for b in dominant_bones(mesh)]
    # every target vertex matched into the whole source character, mostly onto the same kind of limb
    agree = np.mean(np.array(matched) == np.array(own))
    assert agree > 0.85, agree  # measured 0.95
    paint = np.empty(len(pieces[0].data.vertices), dtype=np.float32)
    pieces[0].data.attributes["user_paint"].data.foreach_get("value", paint)
    assert np.allclose(paint, 0.5)  # the user's own attribute is untouched


def test_segment_parts_labels_every_piece_of_a_character(addon):
    bpy = bpy_or_skip()
    from sa3df_addon.mesh_io import moved_meshes

    rigid, pieces, _, _ = _robots()
    settings = bpy.context.scene.sa3df
    settings.part_source, settings.part_count = "KMEANS", 6
    select([pieces[3]], pieces[3])  # one piece selected: the whole robot is segmented
    assert bpy.ops.sa3df.segment_parts() == {"FINISHED"}
    labels = {p.name: attribute(p, "sa3df_part") for p in moved_meshes(rigid)}
    assert all(len(v) and v.min() >= 0 for v in labels.values()), labels
    assert len(np.unique(np.concatenate(list(labels.values())))) == 6  # parts across the pieces, not per piece
    assert all(any(g.name.startswith("sa3df_part_") for g in p.vertex_groups) for p in moved_meshes(rigid))


def test_transfer_skin_weights_from_rigid_pieces(addon):
    """The robot's rigid pieces count as weighted 1.0 to their bones: a loose one-mesh copy of the twin (no
    rig) gets each box's bone."""
    bpy = bpy_or_skip()
    from sa3df_addon.mesh_io import mesh_arrays

    rigid, _, _, meshes = _robots()
    parts = [mesh_arrays(m, evaluated=False) for m in meshes]
    offsets = np.cumsum([0] + [len(v) for v, _ in parts])
    data = bpy.data.meshes.new("Loose")
    data.from_pydata(np.concatenate([v for v, _ in parts]).tolist(), [],
                     np.concatenate([f + o for (_, f), o in zip(parts, offsets)]).tolist())
    loose = bpy.data.objects.new("Loose", data)
    bpy.context.scene.collection.objects.link(loose)
    truth = np.concatenate([dominant_bones(m) for m in meshes])
    select([rigid, loose], rigid)
    assert bpy.ops.sa3df.transfer_skin_weights() == {"FINISHED"}
    assert loose.modifiers[-1].type == "ARMATURE" and loose.modifiers[-1].object == rigid
    assert {g.name for g in loose.vertex_groups} <= set(BONES)
    got = dominant_bones(loose)
    assert np.mean([_limb(a) == _limb(b) for a, b in zip(got, truth)]) > 0.9  # measured 0.988
    assert np.mean(got == truth) > 0.85  # measured 0.977: the very bone, through 13 pieces and the hands


def test_an_armature_that_moves_nothing_is_refused(addon):
    bpy = bpy_or_skip()
    from robot_rig import build_robot

    rigid, _, _, meshes = _robots()
    bare, _ = build_robot("Bare", pieces="none", walk=False)
    select([bare, meshes[0]], bare)
    with pytest.raises(RuntimeError, match="'Bare' moves no mesh"):
        bpy.ops.sa3df.show_correspondence()
    assert "sa3df_correspondence" not in meshes[0].data.attributes
