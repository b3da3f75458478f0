"""Segment Parts through the installed extension: what the panel reports (the parts made), and carrying
vertex groups after a k-means run (base features, no training, as in test_addon_blender)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy", reason="bpy (Blender as a module) is not installed")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from blender_scene import add_character, attribute, clear_scene, dominant_bones, select  # noqa: E402
from test_addon_ownership_blender import reports  # noqa: E402,F401  (the fixture: the last message reported)

pytestmark = pytest.mark.blender


def test_parts_summary_says_how_many_parts_each_mesh_got():
    from sa3df_addon.operators import _parts_summary

    assert _parts_summary({"k": 8, "parts_used": {"man": 8, "woman": 8}}, 8, 2) == "8 parts on 2 mesh(es)"
    assert _parts_summary({"k": 8, "parts_used": {"man": 6, "woman": 8}}, 8, 2) == \
        "8 parts on 2 mesh(es) (man: 6, woman: 8)"
    assert _parts_summary({"k": 7, "parts_used": {"a": 7}}, 8, 1) == "7 parts on 1 mesh(es); 8 were asked for"
    assert _parts_summary({"k": 20, "parts_used": {"a": 20}}, None, 1) == "20 parts on 1 mesh(es)"


def test_the_report_states_the_parts_segment_parts_actually_made(addon, data_dir, reports):
    """k-means over the man and the woman (base features): the report's count is the number of distinct
    parts in the two meshes' attributes, each mesh's own count when they differ, and the request when
    fewer were made."""
    clear_scene()
    meshes = [add_character(data_dir / "humanoids" / f"quaternius_{who}_casual.fbx")[1] for who in ("male", "female")]
    settings = bpy.context.scene.sa3df
    settings.part_source, settings.part_count = "KMEANS", 8
    select(meshes, meshes[0])
    assert bpy.ops.sa3df.segment_parts() == {"FINISHED"}
    labels = {obj.name: attribute(obj, "sa3df_part") for obj in meshes}
    made = len(set(np.concatenate(list(labels.values())).tolist()))
    used = {name: len(np.unique(lab)) for name, lab in labels.items()}
    message = reports()
    expected = f"Info: {made} parts on 2 mesh(es)"
    if any(count != made for count in used.values()):
        expected += " (" + ", ".join(f"{name}: {count}" for name, count in used.items()) + ")"
    if made != 8:
        expected += "; 8 were asked for"
    assert message.startswith(expected + ", in attribute"), (message, used)
    print(message)


def test_carrying_groups_after_kmeans_carries_the_bones_not_the_parts(addon, data_dir):
    clear_scene()
    man_rig, man = add_character(data_dir / "humanoids" / "quaternius_male_casual.fbx")
    woman_rig, woman = add_character(data_dir / "humanoids" / "quaternius_female_casual.fbx")
    for rig in (man_rig, woman_rig):
        rig.data.pose_position = "REST"
    own = np.array([f"sa3df_{b}" if b else "" for b in dominant_bones(woman)], dtype=object)
    settings = bpy.context.scene.sa3df
    settings.part_source, settings.part_count = "KMEANS", 6
    select([man, woman], man)
    assert bpy.ops.sa3df.segment_parts() == {"FINISHED"}
    assert any(g.name.startswith("sa3df_part_") for g in man.vertex_groups)
    settings.part_source = "GROUPS"
    assert bpy.ops.sa3df.segment_parts() == {"FINISHED"}

    carried = {g.name for g in woman.vertex_groups if g.name.startswith("sa3df_") and not g.name.startswith("sa3df_part_")}
    assert not any(name.startswith("sa3df_sa3df_") for name in carried), sorted(carried)[:5]
    assert {f"sa3df_{b}" for b in ("Head", "Foot.L", "Foot.R")} <= carried <= {f"sa3df_{b}" for b in man.vertex_groups.keys()}
    from sa3df_addon.mesh_io import vertex_group_weights

    names = sorted(carried)
    weights = vertex_group_weights(woman, names)
    got = np.array(names, dtype=object)[weights.argmax(axis=1)]
    assert (got == own).mean() > 0.8  # the bone groups, as without the earlier k-means run
