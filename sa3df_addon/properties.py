"""Per-scene settings shown in the panel."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty


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
            ("KMEANS", "K-Means", "Find parts on the active mesh and carry them to the other selected ones"),
            ("GROUPS", "Active's Vertex Groups", "Carry the active mesh's vertex groups over to the others"),
        ],
    )
    rest_prior: FloatProperty(
        name="Rest-Pose Prior", default=0.2, min=0.0, max=1.0,
        description="Carrying vertex groups (Segment Parts), Transfer Skin Weights and Transfer Motion: how "
                    "much matching favours vertices at the same place in the two shapes (both scaled to their "
                    "bounding boxes, faced alike). Keeps hands and feet from matching the arm or leg next to "
                    "them; 0 matches on features alone (for meshes in very different poses)",
    )


classes = (SA3DF_SceneSettings,)


def register_properties() -> None:
    bpy.types.Scene.sa3df = PointerProperty(type=SA3DF_SceneSettings)


def unregister_properties() -> None:
    del bpy.types.Scene.sa3df
