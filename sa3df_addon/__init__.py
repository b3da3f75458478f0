"""sa3df: surface-aware 3D semantic features in Blender (a thin layer over the ``sa3df`` backend).

Registers the preferences, the per-scene settings, the operators (``operators``, ``motion_ops``) and the
"SA3DF" sidebar panel.
"""

from __future__ import annotations

import bpy
from sa3df.service.client import release_shared_client

from . import backend, motion_ops, operators, panel, preferences, properties


def _classes() -> list:
    return [preferences.SA3DF_AddonPreferences, *properties.classes, *operators.classes, *backend.classes,
            *motion_ops.classes,
            *panel.classes]


def register():
    for cls in _classes():
        bpy.utils.register_class(cls)
    properties.register_properties()


def unregister():
    release_shared_client()
    properties.unregister_properties()
    for cls in reversed(_classes()):
        bpy.utils.unregister_class(cls)
