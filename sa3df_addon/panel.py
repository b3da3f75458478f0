"""The "SA3DF" tab in the 3D viewport's sidebar."""

from __future__ import annotations

import bpy

from . import motion_ops
from .backend import backend_summary, bundled_torch
from .preferences import preferences
from .runner import running_job, selected_characters


class SA3DF_PT_main(bpy.types.Panel):
    bl_label = "Surface-Aware Features"
    bl_idname = "SA3DF_PT_main"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "SA3DF"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.sa3df
        job = running_job()
        busy = job is not None
        if busy:
            box = layout.box()
            box.label(text=job.name.replace("_", " ").title(), icon="SORTTIME")
            box.progress(factor=job.fraction, type="BAR", text=f"{job.fraction:.0%} {job.message}")
            box.operator("sa3df.cancel_job", icon="CANCEL")
        self._draw_selection(layout, context)
        column = layout.column(align=True)
        column.prop(settings, "use_modifiers")
        column.prop(settings, "train_on_selection")
        prefs = preferences(context)
        if prefs is not None:  # the main preferences, at hand (all of them: Preferences > Add-ons)
            column = layout.column(align=True)
            column.enabled = not busy
            column.prop(prefs, "extractor")
            column.prop(prefs, "effort")
            column.prop(prefs, "device")
        column = layout.column(align=True)
        column.enabled = not busy
        column.operator("sa3df.compute_features", icon="SHADING_RENDERED")
        column.operator("sa3df.show_correspondence", icon="UV_SYNC_SELECT")
        box = layout.box()
        box.enabled = not busy
        box.prop(settings, "part_source")
        box.prop(settings, "part_count" if settings.part_source == "KMEANS" else "rest_prior")
        box.operator("sa3df.segment_parts", icon="MOD_EXPLODE")
        column = layout.column(align=True)
        column.enabled = not busy
        column.prop(settings, "rest_prior")  # used by skin weights and motion alike
        column.operator("sa3df.transfer_skin_weights", icon="MOD_VERTEX_WEIGHT")
        self._draw_motion(layout, context, busy)
        layout.separator()
        layout.operator("sa3df.clear", icon="TRASH")
        self._draw_backend(layout, context, busy)

    @staticmethod
    def _draw_backend(layout, context, busy: bool) -> None:
        """Which Python the worker runs in and the device it found; the way out when this build lacks torch."""
        box = layout.box()
        prefs = preferences(context)
        if prefs is not None and prefs.backend == "BUNDLED" and not bundled_torch():
            box.label(text="No torch in this build: Preferences > Add-ons > SA3DF > Backend", icon="ERROR")
        box.label(text=backend_summary(context), icon="SYSTEM")
        row = box.row()
        row.enabled = not busy
        row.operator("sa3df.check_backend", icon="FILE_REFRESH")

    @staticmethod
    def _draw_selection(layout, context) -> None:
        try:
            characters = selected_characters(context)
        except ValueError:
            layout.label(text="Select one or more meshes", icon="INFO")
            return
        pieces = len(characters[0].objects)
        text = f"Source: {characters[0].name}" + (f" ({pieces} meshes)" if pieces > 1 else "")
        text += f"  +{len(characters) - 1} target(s)" if len(characters) > 1 else ""
        layout.label(text=text, icon="MESH_DATA")

    @staticmethod
    def _draw_motion(layout, context, running: bool) -> None:
        column = layout.column(align=True)
        column.enabled = not running
        column.label(text="Motion")
        column.operator("sa3df.transfer_motion", icon="ANIM")
        column.operator("sa3df.align_pose", icon="ARMATURE_DATA")
        estimate = motion_ops.transfer_estimate(context)
        if estimate:
            column.label(text=estimate, icon="TIME")


classes = (SA3DF_PT_main,)
