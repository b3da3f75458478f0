"""sa3df: surface-aware 3D semantic features in Blender (a thin layer over the ``sa3df`` backend).

Registers the preferences, the per-scene settings, the operators and the "SA3DF" sidebar panel,
plus the motion operators of ``motion_ops`` when that module is present.
"""

from __future__ import annotations

import importlib
import importlib.util

import bpy

from . import operators, panel, preferences, properties


def _optional_modules() -> list:
    """Modules shipped only in some builds (``motion_ops``)."""
    if importlib.util.find_spec(f"{__package__}.motion_ops") is None:
        return []
    return [importlib.import_module(f"{__package__}.motion_ops")]


def _classes() -> list:
    return [preferences.SA3DF_AddonPreferences, *properties.classes, *operators.classes, *panel.classes]


def register():
    for cls in _classes():
        bpy.utils.register_class(cls)
    properties.register_properties()
    for module in _optional_modules():
        module.register()


def unregister():
    from sa3df.service.client import release_shared_client

    release_shared_client()
    for module in reversed(_optional_modules()):
        module.unregister()
    properties.unregister_properties()
    for cls in reversed(_classes()):
        bpy.utils.unregister_class(cls)
