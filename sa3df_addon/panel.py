"""The "SA3DF" tab in the 3D viewport's sidebar."""

from __future__ import annotations

import bpy

from .preferences import preferences
from .runner import running_job, selected_meshes


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

    @staticmethod
    def _draw_selection(layout, context) -> None:
        try:
            meshes = selected_meshes(context)
        except ValueError:
            layout.label(text="Select one or more meshes", icon="INFO")
            return
        text = f"Source: {meshes[0].name}" + (f"  +{len(meshes) - 1} target(s)" if len(meshes) > 1 else "")
        layout.label(text=text, icon="MESH_DATA")

    @staticmethod
    def _draw_motion(layout, context, running: bool) -> None:
        """Motion operators, when the motion module is installed."""
        names = [(n, i) for n, i in (("transfer_motion", "ANIM"), ("align_pose", "ARMATURE_DATA"))
                 if hasattr(bpy.types, f"SA3DF_OT_{n}")]
        if not names:
            return
        column = layout.column(align=True)
        column.enabled = not running
        column.label(text="Motion")
        for name, icon in names:
            column.operator(f"sa3df.{name}", icon=icon)
        estimate = _motion_estimate(context)
        if estimate:
            column.label(text=estimate, icon="TIME")


def _motion_estimate(context) -> str | None:
    """Transfer Motion's expected duration for the selection (from the motion module, when installed)."""
    import importlib

    try:
        motion_ops = importlib.import_module(f"{__package__}.motion_ops")
    except ImportError:
        return None
    return motion_ops.transfer_estimate(context)


classes = (SA3DF_PT_main,)
