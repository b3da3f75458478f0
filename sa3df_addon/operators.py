"""The panel's operators: features, correspondence, parts, skin weights, clear, and worker control.

Each feature operator gathers the selected meshes (the active one first: it is the source),
builds a backend job (see ``sa3df.service.protocol``), and writes the result under "sa3df_" names.
"""

from __future__ import annotations

import bpy
import numpy as np

from sa3df.service import client as worker_client
from sa3df.service import protocol

from . import actions, results
from .backend import client_for
from .backend_env import BackendEnvError, describe_device
from .mesh_io import armature_of, bone_weights, vertex_group_labels
from .preferences import feature_settings
from .runner import (BackendOperator, Character, Request, UserError, character_of, character_request, mesh_inputs,
                     piece_rows, selected_characters)

FEATURES_COLOR = "sa3df_features"
CORRESPONDENCE_COLOR = "sa3df_correspondence"
MATCH_INDEX = "sa3df_match_index"
PART_INDEX = "sa3df_part"
PART_COLOR = "sa3df_part_color"
ARMATURE_MODIFIER = "sa3df_Armature"


def show_colors(context) -> None:
    """Switch the viewports in Solid mode to show the active colour attribute (a view setting)."""
    screen = getattr(context, "screen", None)
    for area in (screen.areas if screen is not None else []):
        for space in area.spaces:
            if space.type == "VIEW_3D" and space.shading.type == "SOLID":
                space.shading.color_type = "VERTEX"


def _request(context, job: str, characters: list[Character], apply, extra_params: dict | None = None,
             extra_arrays: dict | None = None) -> Request:
    """A job on ``characters`` (one job mesh each); ``apply(context, job, pieces)`` gets each one's mesh
    objects (:func:`runner.character_request`)."""
    arrays = mesh_inputs(context, characters)
    arrays.update(extra_arrays or {})
    params = {"features": feature_settings(context, train=context.scene.sa3df.train_on_selection)}
    params.update(extra_params or {})
    return character_request(job, arrays, params, characters, apply)


def _write_per_piece(write, pieces: list, values) -> list[str]:
    """``write(obj, rows)`` for each piece of one job mesh; the names it returns."""
    return [write(obj, rows) for obj, rows in piece_rows(pieces, values)]


class SA3DF_OT_compute_features(BackendOperator):
    """Compute surface-aware features of the selected meshes and show them as colours (PCA)"""

    bl_idname = "sa3df.compute_features"
    bl_label = "Compute Features"

    def build_request(self, context) -> Request:
        def apply(context, job, characters) -> str:
            color = lambda obj, rows: results.write_color_attribute(obj, FEATURES_COLOR, rows)  # noqa: E731
            written = [n for i, pieces in enumerate(characters)
                       for n in _write_per_piece(color, pieces, job.arrays[protocol.pca(i)])]
            show_colors(context)
            cached = " (from the cache)" if job.info.get("features_from") in ("memory", "disk") else ""
            return (f"Features of {_count(characters)}{cached}: {job.info.get('embedding_dim', '?')}-d "
                    f"embedding shown as colour attribute {written_names(_flat(characters), written)}")

        return _request(context, protocol.COMPUTE_FEATURES, selected_characters(context), apply)


class SA3DF_OT_show_correspondence(BackendOperator):
    """Match every other selected mesh to the active one; colours show which part went where"""

    bl_idname = "sa3df.show_correspondence"
    bl_label = "Show Correspondence"

    def build_request(self, context) -> Request:
        def apply(context, job, characters) -> str:
            color = lambda obj, rows: results.write_color_attribute(obj, CORRESPONDENCE_COLOR, rows)  # noqa: E731
            index = lambda obj, rows: results.write_int_attribute(obj, MATCH_INDEX, rows)  # noqa: E731
            colours = []
            for t, pieces in enumerate(characters):
                colours += _write_per_piece(color, pieces, job.arrays[protocol.colors(t)])
                if t > 0:  # the matched vertex of the source character (its pieces' vertices in order)
                    _write_per_piece(index, pieces, job.arrays[protocol.source_index(t)])
            show_colors(context)
            mutual = job.info.get("mutual_fraction", {})
            shares = ", ".join(f"{name} {share:.0%}" for name, share in mutual.items())
            return (f"Matched {_count(characters[1:])} to '{names[0]}' (mutual matches: {shares}); "
                    f"colours in {written_names(_flat(characters), colours)}")

        characters = selected_characters(context, min_count=2, need_active=True)
        names = [c.name for c in characters]
        return _request(context, protocol.CORRESPONDENCE, characters, apply)


class SA3DF_OT_segment_parts(BackendOperator):
    """Split the selected meshes into consistent parts (or carry the active mesh's vertex groups over)"""

    bl_idname = "sa3df.segment_parts"
    bl_label = "Segment Parts"

    def build_request(self, context) -> Request:
        settings = context.scene.sa3df
        if settings.part_source == "GROUPS":
            characters = selected_characters(context, min_count=2, need_active=True)
            source = characters[0].objects
            # never the add-on's own groups (earlier parts): they would come back as sa3df_sa3df_part_00
            owned = [name for obj in source for name in results.owned_part_groups(obj)]
            labels, names = vertex_group_labels(source, skip=owned)
            group_names = [f"sa3df_{name}" for name in names]
            params = {"mode": "transfer", "rest_prior": float(settings.rest_prior)}
            arrays = {protocol.SOURCE_LABELS: labels}
        else:
            characters = selected_characters(context)
            count = settings.part_count
            group_names = [f"sa3df_part_{k:02d}" for k in range(count)]
            params, arrays = {"mode": "kmeans", "k": count}, {}

        def apply(context, job, characters) -> str:
            written = []
            for i, pieces in enumerate(characters):
                colours = dict(piece_rows(pieces, job.arrays[protocol.colors(i)]))
                for obj, labels in piece_rows(pieces, job.arrays[protocol.labels(i)]):
                    written.append(_write_parts(obj, labels, colours[obj], group_names))
            show_colors(context)
            pieces = f" ({len(_flat(characters))} meshes)" if len(_flat(characters)) > len(characters) else ""
            return (f"{_parts_summary(job.info, params.get('k'), len(characters))}{pieces}, "
                    f"in attribute {written_names(_flat(characters), written)} and vertex groups")

        return _request(context, protocol.SEGMENT, characters, apply, params, arrays)


def _write_parts(obj, labels, colours, group_names: list[str]) -> str:
    """One mesh's parts: the label attribute, colours, and a vertex group per part it has."""
    written = results.write_int_attribute(obj, PART_INDEX, labels)
    results.write_color_attribute(obj, PART_COLOR, colours)
    one_hot = np.zeros((len(labels), len(group_names)), dtype=np.float32)
    valid = (labels >= 0) & (labels < len(group_names))
    one_hot[np.flatnonzero(valid), labels[valid]] = 1.0
    used = one_hot.any(axis=0)
    results.write_vertex_groups(obj, [n for n, u in zip(group_names, used) if u], one_hot[:, used])
    return written


def _flat(characters: list[list]) -> list:
    return [obj for pieces in characters for obj in pieces]


def _count(characters: list[list]) -> str:
    """'2 mesh(es)', or '1 character(s) (15 meshes)' when some are made of several pieces."""
    pieces = sum(len(p) for p in characters)
    if pieces == len(characters):
        return f"{pieces} mesh(es)"
    return f"{len(characters)} character(s) ({pieces} meshes)"


def _parts_summary(info: dict, requested: int | None, mesh_count: int) -> str:
    """"8 parts on 3 mesh(es)", saying how many each mesh got when not all, and when fewer were made
    than ``requested`` (k-means; None when vertex groups were carried)."""
    made = int(info.get("k", requested or 0))
    text = f"{made} parts on {mesh_count} mesh(es)"
    used = info.get("parts_used") or {}
    if any(count != made for count in used.values()):
        text += " (" + ", ".join(f"{name}: {count}" for name, count in used.items()) + ")"
    if requested is not None and made != requested:
        text += f"; {requested} were asked for"
    return text


def source_armature(obj):
    """The armature deforming ``obj`` (its Armature modifier's, else its parent), or a UserError."""
    armature = armature_of(obj)
    if armature is None:
        raise UserError(f"Mesh '{obj.name}' is not rigged (no Armature modifier or armature parent)")
    return armature


class SA3DF_OT_transfer_skin_weights(BackendOperator):
    """Give the other selected meshes the active (rigged) mesh's skin weights and armature"""

    bl_idname = "sa3df.transfer_skin_weights"
    bl_label = "Transfer Skin Weights"

    def build_request(self, context) -> Request:
        active = context.active_object
        if active is None or active not in context.selected_objects:
            raise UserError("Make the rigged source (its armature or a mesh it moves) the active object")
        armature = source_armature(active)
        # every other selected mesh is a target (one the armature already moves too); the source is every
        # other mesh the armature moves: skinned ones and rigid pieces
        targets = [Character(o.name, [o]) for o in context.selected_objects if o.type == "MESH" and o != active]
        if not targets:
            raise UserError(f"Select a mesh to give the skin weights of '{armature.name}' to")
        source = character_of(active)
        source.objects = [o for o in source.objects if o.name not in {t.name for t in targets}]
        if not source.objects:
            raise UserError(f"Every mesh '{armature.name}' moves is selected as a target: keep the source unselected "
                            "or make it the active object")
        deform = [b.name for b in armature.data.bones if b.use_deform]
        weights = np.concatenate([bone_weights(armature, obj, deform) for obj in source.objects])
        used = weights.any(axis=0)
        bones, weights = [n for n, u in zip(deform, used) if u], weights[:, used]
        if not bones:
            raise UserError(f"'{source.name}' has no vertex groups for the deform bones of '{armature.name}' "
                            "and no piece parented to one")
        for target in targets:
            if blocked := results.blocked_group_names(target.objects[0], bones):
                raise UserError(f"Object '{target.name}' already has vertex groups named like bones "
                                f"({', '.join(blocked[:4])}…); they are never overwritten")
        armature_name = armature.name

        def apply(context, job, characters) -> str:
            rig = bpy.data.objects.get(armature_name)
            if rig is None:
                raise UserError(f"Armature '{armature_name}' is gone")
            done = []
            for t, (target,) in enumerate(characters[1:], start=1):
                results.write_vertex_groups(target, bones, job.arrays[protocol.weights(t)], exact_names=True)
                _, modifier = results.add_armature_modifier(target, rig, ARMATURE_MODIFIER)
                done.append(f"'{target.name}' {modifier}")
            return f"Skin weights of {len(bones)} bones of '{armature_name}': {'; '.join(done)}"

        return _request(context, protocol.TRANSFER_WEIGHTS, [source, *targets], apply,
                        extra_arrays={protocol.SOURCE_WEIGHTS: weights},
                        extra_params={"rest_prior": float(context.scene.sa3df.rest_prior)})


def written_names(objects: list, names: list[str]) -> str:
    """'sa3df_features' when every object got that name, else 'Body: sa3df_features.001, …'."""
    if len(set(names)) == 1:
        return f"'{names[0]}'"
    return ", ".join(f"'{name}' on '{obj.name}'" for obj, name in zip(objects, names))


class SA3DF_OT_clear(bpy.types.Operator):
    """Remove the attributes, vertex groups and modifiers this add-on wrote on the selected objects,
    unless they were edited since, and (if chosen) the actions Transfer Motion made for the selected
    characters"""

    bl_idname = "sa3df.clear"
    bl_label = "Clear sa3df Results"
    bl_options = {"REGISTER", "UNDO"}

    remove_edited: bpy.props.BoolProperty(
        name="Also Remove Edited",
        description="Also remove items under sa3df's names whose contents changed since sa3df wrote them "
                    "(weights or colours painted since, or an item of that name made by you)",
        default=False,
    )
    remove_actions: bpy.props.BoolProperty(
        name="Remove Transferred Actions", default=True,
        description="Also unassign and delete the actions Transfer Motion made for the selected characters "
                    "(the action each played before comes back); your own actions are never touched",
    )

    def invoke(self, context, event):
        if any(actions.transferred_actions(a) for a in _selected_armatures(context)):
            return context.window_manager.invoke_props_dialog(self)  # offer it: removing is not the only way
        return self.execute(context)

    def execute(self, context):
        removed, kept = 0, []
        for obj in (o for o in context.selected_objects if o.type == "MESH"):  # an armature holds no results
            count, edited = results.clear_results(obj, remove_edited=self.remove_edited)
            removed += count
            kept += [f"'{obj.name}': {name}" for name in edited]
        message = f"Removed {removed} sa3df result(s)"
        if self.remove_actions:
            gone = sum(actions.remove_transferred_actions(a) for a in _selected_armatures(context))
            message += f" and {gone} transferred action(s)" if gone else ""
        if kept:
            message += (f"; kept {len(kept)} edited since sa3df wrote them ({', '.join(kept[:6])}"
                        f"{', …' if len(kept) > 6 else ''}): use 'Also Remove Edited' to remove them too")
        self.report({"WARNING"} if kept else {"INFO"}, message)
        return {"FINISHED"}


def _selected_armatures(context) -> set:
    """The armatures of the selected objects (selected themselves, or moving a selected mesh)."""
    return {armature_of(o) for o in context.selected_objects} - {None}


class SA3DF_OT_cancel_job(bpy.types.Operator):
    """Stop the running sa3df job; nothing is written"""

    bl_idname = "sa3df.cancel_job"
    bl_label = "Cancel"

    def execute(self, context):
        worker_client.shared_client().cancel()
        return {"FINISHED"}


class SA3DF_OT_check_backend(bpy.types.Operator):
    """Start the backend worker and report its versions and device"""

    bl_idname = "sa3df.check_backend"
    bl_label = "Check Backend"

    def execute(self, context):
        try:
            client = client_for(context)
            job = client.wait(client.submit(protocol.ENVIRONMENT, {}, {"device": feature_settings(context)["device"]}))
        except (worker_client.WorkerError, BackendEnvError) as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        if job.state != worker_client.DONE:
            self.report({"ERROR"}, f"The backend does not work: {job.error}")
            return {"CANCELLED"}
        info = client.environment = job.info
        self.report({"INFO"}, f"sa3df {info['sa3df']} on Python {info.get('python', '?')}: {describe_device(info)}; "
                              f"extractors: {', '.join(info['extractors'])}")
        return {"FINISHED"}


class SA3DF_OT_release_worker(bpy.types.Operator):
    """Stop the backend worker process to free its memory (it restarts on the next job)"""

    bl_idname = "sa3df.release_worker"
    bl_label = "Release Worker"

    def execute(self, context):
        worker_client.release_shared_client()
        return {"FINISHED"}


classes = (
    SA3DF_OT_compute_features, SA3DF_OT_show_correspondence, SA3DF_OT_segment_parts,
    SA3DF_OT_transfer_skin_weights, SA3DF_OT_clear, SA3DF_OT_cancel_job, SA3DF_OT_check_backend,
    SA3DF_OT_release_worker,
)
