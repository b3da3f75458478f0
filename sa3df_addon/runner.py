"""The base of every operator that runs a backend job: off the main thread, cancellable, all-or-nothing.

Interactive Blender: ``invoke`` sends the job to the worker and returns; a modal timer polls it,
drives the panel's progress bar and the status bar, and Esc or the panel's Cancel button stops
it. Background Blender (``blender -b``, the bpy module), where timers never fire, or a script's
``bpy.ops`` call: ``execute`` sends the same job to the same worker and waits for it.

Either way the scene is only written once the job has succeeded, in one go, inside the operator,
so one Undo step takes it back and a cancelled or failed job changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import bpy
import numpy as np
from sa3df.service import client as worker_client
from sa3df.service.protocol import mesh_faces, mesh_vertices

from .backend import client_for
from .backend_env import BackendEnvError
from .mesh_io import armature_of, mesh_arrays, moved_meshes, mover

PROGRESS_TIMER_SECONDS = 0.1


class UserError(ValueError):
    """A problem the user can fix (wrong selection, missing rig); reported as is."""


@dataclass
class Request:
    """A job to send, and how to write its result: ``apply(context, job, objects) -> summary``.

    ``objects`` are looked up again by name when the result arrives (the user may have deleted or
    edited them meanwhile: then nothing is written and the job reports why).
    """

    job: str
    arrays: dict
    params: dict
    object_names: list[str]
    vertex_counts: list[int]
    apply: Callable[[bpy.types.Context, worker_client.Job, list], str]
    info: dict = field(default_factory=dict)


@dataclass
class Character:
    """One mesh of a job: a lone mesh object, or every mesh an armature moves (skinned meshes and rigid
    pieces, :func:`moved_meshes`), concatenated in ``objects`` order; ``name`` is an object's (unique).
    Results come back per job mesh and are written piece by piece (:func:`piece_rows`)."""

    name: str
    objects: list


def character_of(obj) -> Character | None:
    """The character ``obj`` belongs to: its armature's meshes when it is an armature or a mesh that armature
    moves, else the mesh alone (None for other objects). An armature that moves no mesh is a UserError."""
    armature = armature_of(obj)
    if armature is not None and (obj.type == "ARMATURE" or mover(obj, armature) is not None):
        pieces = moved_meshes(armature)
        if pieces:  # named after its one mesh, or after the armature
            return Character(armature.name if len(pieces) > 1 else pieces[0].name, pieces)
        if obj.type == "ARMATURE":
            raise UserError(f"Armature '{armature.name}' moves no mesh: no mesh has an Armature modifier using it "
                            "or is parented to one of its bones")
    return Character(obj.name, [obj]) if obj.type == "MESH" else None


def selected_characters(context, min_count: int = 1, need_active: bool = False) -> list[Character]:
    """The characters of the selected objects (:func:`character_of`), the active one's first, each once.
    Raises :class:`UserError` when too few."""
    active = context.active_object
    chosen = [o for o in context.selected_objects if o.type in ("MESH", "ARMATURE")]
    if need_active and (active is None or active not in chosen):
        raise UserError("Make a selected mesh or armature the active object (it is the source)")
    if active in chosen:
        chosen.remove(active)
        chosen.insert(0, active)
    found: dict[str, Character] = {}
    for obj in chosen:
        character = character_of(obj)
        if character is not None:
            found.setdefault(character.name, character)
    characters = list(found.values())
    if len(characters) < min_count:
        raise UserError(f"Select at least {min_count} mesh{'es' if min_count > 1 else ''} or character"
                        f"{'s' if min_count > 1 else ''} (found {len(characters)})")
    return characters


def character_request(job: str, arrays: dict, params: dict, characters: list[Character], apply) -> Request:
    """A :class:`Request` whose job meshes are ``characters``; ``apply(context, job, characters)`` gets them
    again as lists of mesh objects (looked up by name, vertex counts checked)."""
    objects = [o for c in characters for o in c.objects]
    sizes = [len(c.objects) for c in characters]

    def regrouped(context, job, flat) -> str:
        groups, start = [], 0
        for size in sizes:
            groups.append(flat[start:start + size])
            start += size
        return apply(context, job, groups)

    params = {"mesh_names": [c.name for c in characters], **params}
    return Request(job, arrays, params, [o.name for o in objects], [len(o.data.vertices) for o in objects],
                   regrouped)


def piece_rows(pieces: list, values):
    """(object, its rows) of per-vertex ``values`` of one job mesh made of ``pieces`` (in order)."""
    start = 0
    for obj in pieces:
        count = len(obj.data.vertices)
        yield obj, values[start:start + count]
        start += count
    if start != len(values):
        raise ValueError(f"the result has {len(values)} rows but the meshes {[o.name for o in pieces][:3]} have "
                         f"{start} vertices")


def mesh_inputs(context, characters: list[Character]) -> dict:
    """Job arrays for ``characters``, one job mesh each: its pieces' vertices (world space; modifiers applied
    if the scene setting says so) and triangles, concatenated."""
    use_modifiers = context.scene.sa3df.use_modifiers
    arrays = {}
    for i, character in enumerate(characters):
        vertices, triangles, offset = [], [], 0
        for obj in character.objects:
            v, f = mesh_arrays(obj, evaluated=use_modifiers, world=True)
            vertices.append(v)
            triangles.append(f + offset)
            offset += len(v)
        if sum(len(f) for f in triangles) == 0:
            raise UserError(f"Mesh '{character.name}' has no faces ({offset} loose vertices)")
        arrays[mesh_vertices(i)], arrays[mesh_faces(i)] = np.concatenate(vertices), np.concatenate(triangles)
    return arrays


def running_job():
    """The job the worker is busy with (None when idle). The panel and ``poll`` read it directly,
    so no stale "running" flag can survive a crash or a reload."""
    job = worker_client.shared_client().active
    return job if job is not None and not job.finished else None


def _redraw(context) -> None:
    for window in context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()


class BackendOperator(bpy.types.Operator):
    """Subclasses implement :meth:`build_request` and set ``bl_idname``/``bl_label``."""

    bl_options = {"UNDO"}

    def build_request(self, context) -> Request:
        raise NotImplementedError

    @classmethod
    def poll(cls, context):
        return running_job() is None

    # -- synchronous (background, scripts) ------------------------------------------------------
    def _start(self, context):
        """(request, job) of a job now running in the worker, or (None, None) after a reported refusal."""
        request = self._request_or_report(context)
        job = None if request is None else self._submit(context, request)
        return (request, job) if job is not None else (None, None)

    def execute(self, context):
        request, job = self._start(context)
        if job is None:
            return {"CANCELLED"}
        shown = [-1]

        def print_progress(fraction: float, message: str) -> None:
            if int(fraction * 10) != shown[0]:
                shown[0] = int(fraction * 10)
                print(f"sa3df {request.job}: {fraction:4.0%} {message}", flush=True)

        worker_client.shared_client().wait(job, on_progress=print_progress)
        return self._finish(context, request, job)

    # -- interactive (modal, never blocks the UI) -----------------------------------------------
    def invoke(self, context, event):
        if bpy.app.background:
            return self.execute(context)
        request, job = self._start(context)
        if job is None:
            return {"CANCELLED"}
        self._request, self._job = request, job
        wm = context.window_manager
        self._timer = wm.event_timer_add(PROGRESS_TIMER_SECONDS, window=context.window)
        wm.progress_begin(0, 100)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        client = worker_client.shared_client()
        if event.type == "ESC" and event.value == "PRESS":
            client.cancel(self._job)
            return {"RUNNING_MODAL"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        client.poll()
        job = self._job
        context.window_manager.progress_update(int(job.fraction * 100))
        context.workspace.status_text_set(f"{self.bl_label}: {job.fraction:.0%} {job.message}  (Esc to cancel)")
        _redraw(context)
        if not job.finished:
            return {"PASS_THROUGH"}
        self._end_modal(context)
        return self._finish(context, self._request, job)

    def _end_modal(self, context) -> None:
        wm = context.window_manager
        wm.event_timer_remove(self._timer)
        wm.progress_end()
        context.workspace.status_text_set(None)
        _redraw(context)

    # -- shared ---------------------------------------------------------------------------------
    def _request_or_report(self, context) -> Request | None:
        try:
            return self.build_request(context)
        except (UserError, ValueError) as error:
            self.report({"ERROR"}, str(error))
            return None

    def _submit(self, context, request: Request):
        try:
            job = client_for(context).submit(request.job, request.arrays, request.params)
        except (worker_client.WorkerError, BackendEnvError) as error:
            self.report({"ERROR"}, str(error))
            return None
        return job

    def _finish(self, context, request: Request, job) -> set[str]:
        if job.state == worker_client.CANCELLED:
            self.report({"WARNING"}, f"{self.bl_label} cancelled; nothing was changed")
            return {"CANCELLED"}
        if job.state != worker_client.DONE:
            self.report({"ERROR"}, f"{self.bl_label} failed; nothing was changed. {job.error}")
            return {"CANCELLED"}
        try:
            objects = self._objects_again(request)
            summary = request.apply(context, job, objects)
        except (UserError, ValueError) as error:
            self.report({"ERROR"}, f"{self.bl_label}: {error}; nothing was changed")
            return {"CANCELLED"}
        except Exception as error:  # noqa: BLE001 - a bug while writing: say so, and keep it undoable
            self.report({"ERROR"}, f"{self.bl_label}: writing the result failed ({type(error).__name__}: {error}); "
                                   "Undo removes what was written")
            return {"FINISHED"}  # FINISHED pushes the undo step that takes a partial write back
        cleaned = job.info.get("cleaned") or {}
        notes = "; ".join(f"'{name}': {text}" for name, text in cleaned.items())
        extractor = f" [{job.info['extractor']} base features]" if job.info.get("extractor") else ""
        self.report({"INFO"}, summary + extractor + (f" (cleaned: {notes})" if notes else ""))
        return {"FINISHED"}

    @staticmethod
    def _objects_again(request: Request) -> list:
        objects = []
        for name, count in zip(request.object_names, request.vertex_counts):
            obj = bpy.data.objects.get(name)
            if obj is None or obj.type != "MESH":
                raise UserError(f"Object '{name}' is gone")
            if len(obj.data.vertices) != count:
                raise UserError(f"Mesh '{name}' now has {len(obj.data.vertices)} vertices instead of {count}")
            objects.append(obj)
        return objects
