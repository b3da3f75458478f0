"""Writing results into the scene without ever touching the user's own data.

Everything the add-on writes is recorded as *owned*: attribute names in the mesh's custom property
``sa3df_attributes``, vertex groups and modifiers in the object's ``sa3df_vertex_groups`` /
``sa3df_modifiers``. A new result replaces an owned item of the same name; a name the user already
uses gets a ``.001`` suffix instead (or, for skin-weight groups, whose names must equal bone
names, the job is refused up front). "Clear" removes exactly the owned items.
"""

from __future__ import annotations

import numpy as np

PREFIX = "sa3df_"
OWNED_ATTRIBUTES = "sa3df_attributes"
OWNED_GROUPS = "sa3df_vertex_groups"
OWNED_MODIFIERS = "sa3df_modifiers"


def _owned(id_block, key: str) -> list[str]:
    return list(id_block.get(key, []))


def owned_part_groups(obj) -> list[str]:
    """The ``sa3df_`` vertex groups the add-on wrote on ``obj`` (parts and carried groups; skin-weight
    groups carry bare bone names and are not among them)."""
    return [name for name in _owned(obj, OWNED_GROUPS) if name.startswith(PREFIX)]


def _set_owned(id_block, key: str, names: list[str]) -> None:
    if names:
        id_block[key] = sorted(set(names))
    elif key in id_block:
        del id_block[key]


def free_name(existing, owned: list[str], wanted: str) -> str:
    """``wanted`` if it is unused or ours; else the first ``wanted.001``, ``.002``, … that is unused."""
    if wanted not in existing or wanted in owned:
        return wanted
    n = 1
    while f"{wanted}.{n:03d}" in existing:
        n += 1
    return f"{wanted}.{n:03d}"


def _remove_attribute(mesh, name: str) -> None:
    attribute = mesh.attributes.get(name)
    if attribute is not None:
        mesh.attributes.remove(attribute)


def write_color_attribute(obj, name: str, rgb: np.ndarray, make_active: bool = True) -> str:
    """Per-vertex colours (N, 3) in [0, 1] (display/sRGB values) as a FLOAT_COLOR point attribute.
    Returns the name used."""
    mesh = obj.data
    rgb = _checked_rows(obj, rgb, 3, "colours")
    owned = _owned(mesh, OWNED_ATTRIBUTES)
    name = free_name(mesh.attributes.keys(), owned, name)
    _remove_attribute(mesh, name)
    attribute = mesh.color_attributes.new(name, "FLOAT_COLOR", "POINT")
    rgba = np.concatenate([np.clip(rgb, 0.0, 1.0), np.ones((len(rgb), 1))], axis=1).astype(np.float32)
    attribute.data.foreach_set("color_srgb", rgba.ravel())
    _set_owned(mesh, OWNED_ATTRIBUTES, owned + [name])
    if make_active:
        mesh.color_attributes.active_color = mesh.color_attributes[name]
    return name


def write_int_attribute(obj, name: str, values: np.ndarray) -> str:
    """Per-vertex integers (N,) as an INT point attribute. Returns the name used."""
    mesh = obj.data
    values = np.asarray(values).reshape(-1)
    _checked_rows(obj, values, None, "values")
    owned = _owned(mesh, OWNED_ATTRIBUTES)
    name = free_name(mesh.attributes.keys(), owned, name)
    _remove_attribute(mesh, name)
    attribute = mesh.attributes.new(name, "INT", "POINT")
    attribute.data.foreach_set("value", values.astype(np.int32))
    _set_owned(mesh, OWNED_ATTRIBUTES, owned + [name])
    return name


def _checked_rows(obj, array, width: int | None, what: str) -> np.ndarray:
    array = np.asarray(array)
    n = len(obj.data.vertices)
    if len(array) != n or (width is not None and (array.ndim != 2 or array.shape[1] != width)):
        raise ValueError(f"Mesh '{obj.name}' has {n} vertices but the {what} have shape {array.shape}")
    return array


def blocked_group_names(obj, names: list[str]) -> list[str]:
    """The ``names`` that ``obj`` already uses for vertex groups the add-on did not write."""
    owned = set(_owned(obj, OWNED_GROUPS))
    return [n for n in names if n in obj.vertex_groups and n not in owned]


def write_vertex_groups(obj, names: list[str], weights: np.ndarray, exact_names: bool = False,
                        threshold: float = 1e-4) -> list[str]:
    """Vertex groups from an (N, K) weight matrix, one group per column (weights below
    ``threshold`` left out). ``exact_names`` (skin weights: names must equal bone names) raises
    ``ValueError`` instead of renaming when a name belongs to the user. Returns the names used."""
    weights = _checked_rows(obj, weights, len(names), "weights")
    if exact_names and (blocked := blocked_group_names(obj, names)):
        raise ValueError(f"Object '{obj.name}' already has vertex groups {blocked[:5]} of its own; "
                         "rename or remove them first (they are never overwritten)")
    owned = _owned(obj, OWNED_GROUPS)
    used = []
    for k, wanted in enumerate(names):
        name = free_name(obj.vertex_groups.keys(), owned, wanted)
        if name in obj.vertex_groups:
            obj.vertex_groups.remove(obj.vertex_groups[name])
        group = obj.vertex_groups.new(name=name)
        column = weights[:, k].astype(np.float32)
        members = np.flatnonzero(column >= threshold)
        # One bulk call per distinct weight value (a rigid part is a single call).
        values, inverse = np.unique(column[members], return_inverse=True)
        for value_index, value in enumerate(values):
            group.add(members[inverse == value_index].tolist(), float(value), "REPLACE")
        used.append(name)
        owned.append(name)
    _set_owned(obj, OWNED_GROUPS, owned)
    return used


def add_armature_modifier(obj, armature, name: str = "sa3df_Armature") -> str:
    """An Armature modifier (vertex groups) on ``obj`` deforming with ``armature``; replaces only
    the add-on's own modifier of that name. Returns the name used."""
    owned = _owned(obj, OWNED_MODIFIERS)
    name = free_name(obj.modifiers.keys(), owned, name)
    if name in obj.modifiers:
        obj.modifiers.remove(obj.modifiers[name])
    modifier = obj.modifiers.new(name=name, type="ARMATURE")
    modifier.object = armature
    modifier.use_vertex_groups = True
    modifier.use_bone_envelopes = False
    _set_owned(obj, OWNED_MODIFIERS, owned + [name])
    return name


def clear_results(obj) -> int:
    """Remove everything the add-on wrote on ``obj`` (and its mesh); returns how many items."""
    removed = 0
    mesh = obj.data if obj.type == "MESH" else None
    if mesh is not None:
        for name in _owned(mesh, OWNED_ATTRIBUTES):
            if name in mesh.attributes:
                _remove_attribute(mesh, name)
                removed += 1
        _set_owned(mesh, OWNED_ATTRIBUTES, [])
    for name in _owned(obj, OWNED_GROUPS):
        if name in obj.vertex_groups:
            obj.vertex_groups.remove(obj.vertex_groups[name])
            removed += 1
    _set_owned(obj, OWNED_GROUPS, [])
    for name in _owned(obj, OWNED_MODIFIERS):
        if name in obj.modifiers:
            obj.modifiers.remove(obj.modifiers[name])
            removed += 1
    _set_owned(obj, OWNED_MODIFIERS, [])
    return removed


def has_results(obj) -> bool:
    mesh = obj.data if obj.type == "MESH" else None
    return bool((mesh is not None and _owned(mesh, OWNED_ATTRIBUTES)) or _owned(obj, OWNED_GROUPS)
                or _owned(obj, OWNED_MODIFIERS))
