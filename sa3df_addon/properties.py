"""Per-scene settings shown in the panel, and the running job's status (window manager, not saved)."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty


class SA3DF_SceneSettings(bpy.types.PropertyGroup):
    use_modifiers: BoolProperty(
        name="Use Modifiers", default=True,
        description="Read meshes as the viewport shows them (modifiers and armature pose applied); "
                    "modifiers must keep the vertex count",
    )
    train_on_selection: BoolProperty(
        name="Train on Selection", default=True,
        description="Test-time train the surface-aware network on the selected meshes (effort set in preferences)",
    )
    part_count: IntProperty(name="Parts", default=8, min=2, max=64, description="How many parts k-means finds")
    part_source: EnumProperty(
        name="Parts From", default="KMEANS",
        items=[
            ("KMEANS", "K-Means", "Find parts jointly over the selection"),
            ("GROUPS", "Active's Vertex Groups", "Carry the active mesh's vertex groups over to the others"),
        ],
    )


class SA3DF_JobStatus(bpy.types.PropertyGroup):
    running: BoolProperty(default=False)
    fraction: FloatProperty(default=0.0, min=0.0, max=1.0, subtype="FACTOR")
    message: StringProperty(default="")
    label: StringProperty(default="")


classes = (SA3DF_SceneSettings, SA3DF_JobStatus)


def register_properties() -> None:
    bpy.types.Scene.sa3df = PointerProperty(type=SA3DF_SceneSettings)
    bpy.types.WindowManager.sa3df_job = PointerProperty(type=SA3DF_JobStatus)


def unregister_properties() -> None:
    del bpy.types.WindowManager.sa3df_job
    del bpy.types.Scene.sa3df
