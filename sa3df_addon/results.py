"""Writing results into the scene without ever touching the user's own data.

Everything the add-on writes is recorded as *owned* together with a fingerprint of its contents:
attribute name → fingerprint in the mesh's custom property ``sa3df_attributes``, vertex groups and
modifiers likewise in the object's ``sa3df_vertex_groups`` / ``sa3df_modifiers`` (Blender
attributes and vertex groups cannot carry custom properties of their own). An item counts as ours
only while its contents still match the fingerprint, so ownership cannot go stale: an attribute the
user made under one of our old names, or weights the user painted on a transferred group, are theirs.

A new result replaces an item of the same name that is ours; a name the user uses gets a ``.001``
suffix instead (or, for skin-weight groups, whose names must equal bone names, the job is refused up
front). "Clear" removes exactly the unchanged owned items and reports the edited ones it kept; it
removes those too only when asked explicitly (``remove_edited``).
"""

from __future__ import annotations

import hashlib

import numpy as np

from .mesh_io import vertex_group_weights

OWNED_ATTRIBUTES = "sa3df_attributes"
OWNED_GROUPS = "sa3df_vertex_groups"
OWNED_MODIFIERS = "sa3df_modifiers"
# How to read an attribute's values in bulk: data type -> (field, values per element, numpy dtype).
_ATTRIBUTE_FIELDS = {"FLOAT_COLOR": ("color", 4, np.float32), "BYTE_COLOR": ("color", 4, np.float32),
                     "INT": ("value", 1, np.int32), "FLOAT": ("value", 1, np.float32),
                     "FLOAT_VECTOR": ("vector", 3, np.float32), "BOOLEAN": ("value", 1, bool)}


def _fingerprint(*parts) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else str(part).encode())
    return digest.hexdigest()[:20]


def attribute_fingerprint(mesh, name: str) -> str:
    """Fingerprint of a mesh attribute's type, domain and values ("" when it does not exist)."""
    attribute = mesh.attributes.get(name)
    if attribute is None:
        return ""
    field, width, dtype = _ATTRIBUTE_FIELDS.get(attribute.data_type, (None, 0, None))
    if field is None:
        return _fingerprint(attribute.data_type, attribute.domain)  # a type we never write: never matches ours
    values = np.empty(len(attribute.data) * width, dtype=dtype)
    attribute.data.foreach_get(field, values)
    return _fingerprint(attribute.data_type, attribute.domain, values.tobytes())


def group_fingerprints(obj, names: list[str]) -> dict[str, str]:
    """Fingerprints of the weights of ``obj``'s vertex groups ``names`` (one pass over the vertices)."""
    present = [n for n in names if n in obj.vertex_groups]
    weights = vertex_group_weights(obj, present)
    return {name: _fingerprint("group", weights[:, k].tobytes()) for k, name in enumerate(present)}


def modifier_fingerprint(modifier) -> str:
    """What identifies our Armature modifier (modifiers take no custom properties): its type,
    armature and binding settings."""
    target = getattr(modifier, "object", None)
    return _fingerprint(modifier.type, target.name if target else "", getattr(modifier, "use_vertex_groups", ""),
                        getattr(modifier, "use_bone_envelopes", ""))


def _records(id_block, key: str) -> dict[str, str]:
    """name -> fingerprint of the owned items; a name list from an older version has no fingerprints
    (such items cannot be verified, so they count as the user's)."""
    value = id_block.get(key)
    if value is None:
        return {}
    if hasattr(value, "to_dict"):
        return {str(k): str(v) for k, v in value.to_dict().items()}
    return {str(name): "" for name in value}


def _set_records(id_block, key: str, records: dict[str, str]) -> None:
    if records:
        id_block[key] = dict(sorted(records.items()))
    elif key in id_block:
        del id_block[key]


def free_name(existing, ours: bool, wanted: str) -> str:
    """``wanted`` if it is unused or (``ours``) holds our unchanged result; else the first
    ``wanted.001``, ``.002``, … that is unused."""
    if wanted not in existing or ours:
        return wanted
    n = 1
    while f"{wanted}.{n:03d}" in existing:
        n += 1
    return f"{wanted}.{n:03d}"


def _attribute_is_ours(mesh, name: str) -> bool:
    recorded = _records(mesh, OWNED_ATTRIBUTES).get(name)
    return bool(recorded) and recorded == attribute_fingerprint(mesh, name)


def _new_attribute_name(mesh, wanted: str) -> str:
    """The name to write ``wanted`` under, with our unchanged old result of that name removed."""
    name = free_name(mesh.attributes.keys(), _attribute_is_ours(mesh, wanted), wanted)
    attribute = mesh.attributes.get(name)
    if attribute is not None:
        mesh.attributes.remove(attribute)
    return name


def _own_attribute(mesh, name: str) -> None:
    records = _records(mesh, OWNED_ATTRIBUTES)
    records[name] = attribute_fingerprint(mesh, name)  # read back: exactly what a later check reads
    _set_records(mesh, OWNED_ATTRIBUTES, records)


def write_color_attribute(obj, name: str, rgb: np.ndarray, make_active: bool = True) -> str:
    """Per-vertex colours (N, 3) in [0, 1] (display/sRGB values) as a FLOAT_COLOR point attribute.
    Returns the name used."""
    mesh = obj.data
    rgb = _checked_rows(obj, rgb, 3, "colours")
    name = _new_attribute_name(mesh, name)
    attribute = mesh.color_attributes.new(name, "FLOAT_COLOR", "POINT")
    rgba = np.concatenate([np.clip(rgb, 0.0, 1.0), np.ones((len(rgb), 1))], axis=1).astype(np.float32)
    attribute.data.foreach_set("color_srgb", rgba.ravel())
    _own_attribute(mesh, name)
    if make_active:
        mesh.color_attributes.active_color = mesh.color_attributes[name]
    return name


def write_int_attribute(obj, name: str, values: np.ndarray) -> str:
    """Per-vertex integers (N,) as an INT point attribute. Returns the name used."""
    mesh = obj.data
    values = np.asarray(values).reshape(-1)
    _checked_rows(obj, values, None, "values")
    name = _new_attribute_name(mesh, name)
    attribute = mesh.attributes.new(name, "INT", "POINT")
    attribute.data.foreach_set("value", values.astype(np.int32))
    _own_attribute(mesh, name)
    return name


def _checked_rows(obj, array, width: int | None, what: str) -> np.ndarray:
    array = np.asarray(array)
    n = len(obj.data.vertices)
    if len(array) != n or (width is not None and (array.ndim != 2 or array.shape[1] != width)):
        raise ValueError(f"Mesh '{obj.name}' has {n} vertices but the {what} have shape {array.shape}")
    return array


def _unchanged_groups(obj, names) -> set[str]:
    """Those of ``names`` that are our vertex groups with the weights we wrote."""
    records = _records(obj, OWNED_GROUPS)
    wanted = [n for n in names if records.get(n)]
    return {n for n, fp in group_fingerprints(obj, wanted).items() if fp == records[n]}


def blocked_group_names(obj, names: list[str]) -> list[str]:
    """The ``names`` that ``obj`` already uses for vertex groups that are not our unchanged results
    (the user's own, or ours with weights painted since)."""
    present = [n for n in names if n in obj.vertex_groups]
    ours = _unchanged_groups(obj, present)
    return [n for n in present if n not in ours]


def write_vertex_groups(obj, names: list[str], weights: np.ndarray, exact_names: bool = False,
                        threshold: float = 1e-4) -> list[str]:
    """Vertex groups from an (N, K) weight matrix, one group per column (weights below
    ``threshold`` left out). ``exact_names`` (skin weights: names must equal bone names) raises
    ``ValueError`` instead of renaming when a name belongs to the user. Returns the names used."""
    weights = _checked_rows(obj, weights, len(names), "weights")
    if exact_names and (blocked := blocked_group_names(obj, names)):
        raise ValueError(f"Object '{obj.name}' already has vertex groups {blocked[:5]} of its own (or edited "
                         "since sa3df wrote them); rename or remove them first (they are never overwritten)")
    ours = _unchanged_groups(obj, names)
    used = []
    for k, wanted in enumerate(names):
        name = free_name(obj.vertex_groups.keys(), wanted in ours, wanted)
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
    records = _records(obj, OWNED_GROUPS)
    records.update(group_fingerprints(obj, used))
    _set_records(obj, OWNED_GROUPS, records)
    return used


def add_armature_modifier(obj, armature, name: str = "sa3df_Armature") -> tuple[str, str]:
    """Make ``armature`` deform ``obj`` through its vertex groups, exactly once.

    An Armature modifier already on ``obj`` (the user's, or ours) is reused: pointed at ``armature``
    with vertex groups on, so the mesh is never deformed twice. Otherwise a new modifier ``name`` is
    added and owned. Returns (modifier name, what was done, in words for the report)."""
    existing = [m for m in obj.modifiers if m.type == "ARMATURE"]
    records = _records(obj, OWNED_MODIFIERS)
    if existing:
        modifier = existing[0]
        before = modifier.object.name if modifier.object else "no armature"
        action = (f"reused its Armature modifier '{modifier.name}'" if modifier.object == armature
                  else f"pointed its Armature modifier '{modifier.name}' from {before} to '{armature.name}'")
        ours = records.get(modifier.name) == modifier_fingerprint(modifier)
        modifier.object, modifier.use_vertex_groups = armature, True
        if ours:  # still ours: keep owning it under its new fingerprint
            records[modifier.name] = modifier_fingerprint(modifier)
            _set_records(obj, OWNED_MODIFIERS, records)
        return modifier.name, action
    name = free_name(obj.modifiers.keys(), False, name)
    modifier = obj.modifiers.new(name=name, type="ARMATURE")
    modifier.object = armature
    modifier.use_vertex_groups = True
    modifier.use_bone_envelopes = False
    records[name] = modifier_fingerprint(modifier)
    _set_records(obj, OWNED_MODIFIERS, records)
    return name, f"added Armature modifier '{name}'"


def clear_results(obj, remove_edited: bool = False) -> tuple[int, list[str]]:
    """Remove what the add-on wrote on ``obj`` (and its mesh) and is unchanged since; with
    ``remove_edited`` also what was edited or replaced under our names since. Returns (how many were
    removed, names kept because they changed)."""
    removed, kept = 0, []
    mesh = obj.data if obj.type == "MESH" else None
    if mesh is not None:
        current = {n: attribute_fingerprint(mesh, n) for n in _records(mesh, OWNED_ATTRIBUTES)}
        r, k = _clear(mesh, OWNED_ATTRIBUTES, current, lambda n: mesh.attributes.remove(mesh.attributes[n]),
                      remove_edited)
        removed, kept = removed + r, kept + k
    groups = group_fingerprints(obj, list(_records(obj, OWNED_GROUPS)))
    r, k = _clear(obj, OWNED_GROUPS, groups, lambda n: obj.vertex_groups.remove(obj.vertex_groups[n]), remove_edited)
    removed, kept = removed + r, kept + k
    modifiers = {n: modifier_fingerprint(obj.modifiers[n]) for n in _records(obj, OWNED_MODIFIERS) if n in obj.modifiers}
    r, k = _clear(obj, OWNED_MODIFIERS, modifiers, lambda n: obj.modifiers.remove(obj.modifiers[n]), remove_edited)
    return removed + r, kept + k


def _clear(id_block, key: str, current: dict[str, str], remove, remove_edited: bool) -> tuple[int, list[str]]:
    """Remove the recorded items whose ``current`` fingerprint matches (or all present, with
    ``remove_edited``); edited ones stay recorded, so a later explicit Clear can still remove them."""
    records, kept, removed = _records(id_block, key), {}, 0
    for name, recorded in records.items():
        if not current.get(name):
            continue  # gone already: nothing to remove, and the record goes
        if recorded == current[name] or remove_edited:
            remove(name)
            removed += 1
        else:
            kept[name] = recorded
    _set_records(id_block, key, kept)
    return removed, sorted(kept)
