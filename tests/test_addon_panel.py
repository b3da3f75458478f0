"""The panel and the preferences as drawn: every button in its place, the backend line with the device its
worker reports (a faked GPU report takes the GPU path), each backend environment's settings."""

from __future__ import annotations

import sys

import pytest

bpy = pytest.importorskip("bpy", reason="bpy (Blender as a module) is not installed")

from blender_scene import EXTENSION_MODULE, select  # noqa: E402
from sa3df.service import client as worker_client  # noqa: E402

pytestmark = pytest.mark.blender
MODULE = EXTENSION_MODULE



class RecordingLayout:
    """Stands in for ``UILayout`` to record what the panel draws."""

    def __init__(self, log: list):
        self.log, self.enabled, self.use_property_split = log, True, False

    def _child(self, *args, **kwargs):
        return RecordingLayout(self.log)

    box = column = row = _child

    def label(self, text="", icon="NONE"):
        self.log.append(("label", text))

    def progress(self, factor=0.0, type="BAR", text=""):
        self.log.append(("progress", text))

    def operator(self, idname, icon="NONE", text=""):
        self.log.append(("operator", idname))

    def prop(self, data, name, **kwargs):
        self.log.append(("prop", name))

    def separator(self):
        pass


def _drawn(context) -> list:
    from types import SimpleNamespace

    panel = bpy.types.SA3DF_PT_main
    log = []
    fake = SimpleNamespace(layout=RecordingLayout(log), _draw_selection=panel._draw_selection,
                           _draw_motion=panel._draw_motion, _draw_backend=panel._draw_backend)
    panel.draw(fake, context)
    return log


def test_panel_draws_every_button_and_the_motion_ones_once_they_exist(man):
    armature, body = man
    select([body], body)
    drawn = _drawn(bpy.context)
    operators = [entry[1] for entry in drawn if entry[0] == "operator"]
    motion = ["sa3df.transfer_motion", "sa3df.align_pose"]
    assert [op for op in operators if op not in motion] == [
        "sa3df.compute_features", "sa3df.show_correspondence", "sa3df.segment_parts",
        "sa3df.transfer_skin_weights", "sa3df.clear", "sa3df.check_backend"]
    assert ("label", f"Source: {body.name}") in drawn and not any(e[0] == "progress" for e in drawn)
    assert {("prop", "extractor"), ("prop", "effort"), ("prop", "part_count"), ("prop", "rest_prior")} <= set(drawn)
    assert drawn[drawn.index(("operator", "sa3df.transfer_skin_weights")) - 1] == ("prop", "rest_prior")
    if hasattr(bpy.types, "SA3DF_OT_transfer_motion"):  # the zip ships motion_ops: registered and drawn
        assert set(motion) <= set(operators)
        return

    class SA3DF_OT_transfer_motion(bpy.types.Operator):  # what the motion module registers
        bl_idname, bl_label = "sa3df.transfer_motion", "Transfer Motion"

    assert "sa3df.transfer_motion" not in operators
    bpy.utils.register_class(SA3DF_OT_transfer_motion)
    try:
        assert ("operator", "sa3df.transfer_motion") in _drawn(bpy.context)
    finally:
        bpy.utils.unregister_class(SA3DF_OT_transfer_motion)


def test_panel_shows_the_backend_and_the_gpu_its_worker_reports(addon, man):
    """No CUDA here: a faked report of the worker's device takes the panel's GPU path."""
    shared = worker_client.shared_client()
    saved, shared.environment = shared.environment, {
        "device": "cuda", "device_type": "cuda", "cuda": "NVIDIA GeForce RTX 4090", "torch": "2.8.0+cu128",
        "precision": "fp16", "threads": 16}
    try:
        labels = [entry[1] for entry in _drawn(bpy.context) if entry[0] == "label"]
    finally:
        shared.environment = saved
    mode = {"BUNDLED": "Bundled", "EXTERNAL": "External", "MANAGED": "Managed"}[addon.backend]
    assert f"{mode}: CUDA: NVIDIA GeForce RTX 4090, torch 2.8.0+cu128, fp16" in labels
    assert bpy.ops.sa3df.check_backend() == {"FINISHED"}  # the real report replaces it
    labels = [entry[1] for entry in _drawn(bpy.context) if entry[0] == "label"]
    assert any(label.startswith(f"{mode}: CPU, ") and "threads, torch" in label for label in labels), labels


def test_preferences_show_each_backend_environment_with_its_settings_and_buttons(addon):
    draw = sys.modules[f"{MODULE}.backend"].draw_backend_preferences
    saved = addon.backend
    drawn = {}
    try:
        for mode in ("BUNDLED", "MANAGED", "EXTERNAL"):
            addon.backend = mode
            drawn[mode] = []
            draw(addon, RecordingLayout(drawn[mode]))
    finally:
        addon.backend = saved
    for mode, props in (("MANAGED", {"managed_torch", "managed_python", "managed_wheels"}),
                        ("EXTERNAL", {"external_python"})):
        assert props <= {entry[1] for entry in drawn[mode] if entry[0] == "prop"}
        assert ("operator", "sa3df.install_backend") in drawn[mode]
    assert ("operator", "sa3df.install_backend") not in drawn["BUNDLED"]
    assert all(("operator", "sa3df.check_backend") in entries for entries in drawn.values())


def test_the_cache_size_limit_preference_reaches_the_backend_settings(addon):
    preferences = sys.modules[f"{MODULE}.preferences"]
    saved = addon.cache_limit_mb
    try:
        assert preferences.feature_settings(bpy.context)["cache_limit_mb"] == 2048
        addon.cache_limit_mb = 300
        assert preferences.feature_settings(bpy.context)["cache_limit_mb"] == 300
    finally:
        addon.cache_limit_mb = saved
