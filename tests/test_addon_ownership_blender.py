"""The user's data in the scene outlives every sa3df button: Clear removes only our unchanged results,
skin weights reuse the Armature modifier a mesh already has, and reports name what was written."""

from __future__ import annotations

import numpy as np
import pytest

bpy = pytest.importorskip("bpy", reason="bpy (Blender as a module) is not installed")

from blender_scene import attribute, mesh_from_vertices, select  # noqa: E402

pytestmark = pytest.mark.blender



@pytest.fixture
def reports(capfd):
    """``reports()``: the last message an operator reported (headless Blender prints "Info: ...")."""

    def last() -> str:
        lines = [line for line in capfd.readouterr().out.splitlines() if line.startswith(("Info: ", "Warning: "))]
        return lines[-1] if lines else ""

    return last


def _paint(obj, name: str, value: float) -> np.ndarray:
    values = np.full(len(obj.data.vertices) * 4, value, dtype=np.float32)
    obj.data.attributes[name].data.foreach_set("color", values)
    return values


def test_clear_keeps_an_attribute_the_user_made_under_our_old_name(man, reports):
    armature, body = man
    body.data.color_attributes.new("sa3df_features", "FLOAT_COLOR", "POINT")  # the user's, first
    _paint(body, "sa3df_features", 0.25)
    select([body], body)
    assert bpy.ops.sa3df.compute_features() == {"FINISHED"}
    message = reports()
    assert "'sa3df_features.001'" in message, "the report names what was written"
    assert "[geometric base features]" in message, "and which extractor ran"
    # The user deletes our result and makes an attribute of their own under the same name.
    body.data.attributes.remove(body.data.attributes["sa3df_features.001"])
    body.data.color_attributes.new("sa3df_features.001", "FLOAT_COLOR", "POINT")
    _paint(body, "sa3df_features.001", 0.75)
    assert bpy.ops.sa3df.clear() == {"FINISHED"}
    np.testing.assert_allclose(attribute(body, "sa3df_features"), 0.25)
    np.testing.assert_allclose(attribute(body, "sa3df_features.001"), 0.75)
    message = reports()
    assert "kept 1 edited" in message and "sa3df_features.001" in message


def test_clear_keeps_weights_painted_after_a_skin_weight_transfer_unless_asked(man, reports):
    armature, body = man
    target = mesh_from_vertices("Target", np.array([v.co for v in body.data.vertices]) + 1.0, body)
    select([body, target], body)
    assert bpy.ops.sa3df.transfer_skin_weights() == {"FINISHED"}
    transferred = sorted(target.vertex_groups.keys())
    painted = transferred[0]
    target.vertex_groups[painted].add(list(range(20)), 1.0, "REPLACE")  # the user paints on one group
    assert bpy.ops.sa3df.clear() == {"FINISHED"}
    assert target.vertex_groups.keys() == [painted] and not target.modifiers
    message = reports()
    assert f"'Target': {painted}" in message and "Also Remove Edited" in message
    assert bpy.ops.sa3df.clear(remove_edited=True) == {"FINISHED"}
    assert not target.vertex_groups.keys() and not any(k.startswith("sa3df") for k in target.keys())


def test_skin_weights_reuse_the_armature_modifier_a_mesh_already_has(man, reports):
    armature, body = man
    target = mesh_from_vertices("Target", np.array([v.co for v in body.data.vertices]) + 1.0, body)
    users = target.modifiers.new("Armature", "ARMATURE")  # the user's own, already bound to the rig
    users.object = armature
    select([body, target], body)
    assert bpy.ops.sa3df.transfer_skin_weights() == {"FINISHED"}
    assert [(m.name, m.type, m.object) for m in target.modifiers] == [("Armature", "ARMATURE", armature)]
    assert "reused its Armature modifier 'Armature'" in reports()
    assert bpy.ops.sa3df.clear() == {"FINISHED"}
    assert [m.name for m in target.modifiers] == ["Armature"], "the user's modifier is never cleared"

    other = bpy.data.objects.new("OtherRig", bpy.data.armatures.new("OtherRig"))
    bpy.context.scene.collection.objects.link(other)
    users.object = other
    select([body, target], body)
    assert bpy.ops.sa3df.transfer_skin_weights() == {"FINISHED"}
    assert [(m.name, m.object) for m in target.modifiers] == [("Armature", armature)], "deformed once"
    assert f"from OtherRig to '{armature.name}'" in reports()
