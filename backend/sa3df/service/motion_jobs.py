"""Worker jobs for the add-on's motion operators: "transfer_motion" and "align_pose".

Inputs (arrays): ``mesh0_*`` the source skin and ``mesh1_*`` the target skin, both at rest in world space
(features are computed and matched on these); ``source_frames`` (T, Ns, 3) the source's deformed skin per
frame (align_pose: T = 1, the static shape), already in the target armature's space; the target rig as
``rig_parents`` (B,), ``rig_rest_matrices`` (B, 4, 4), ``rig_rest_vertices`` (Nt, 3), ``rig_weights``
(Nt, B), ``rig_faces`` (F, 3) and ``rig_connected`` (B,). Params: ``mesh_names``, ``features`` (see
:mod:`sa3df.service.protocol`), ``bone_names``, ``scale`` (source -> target size ratio, optional), ``placement``,
``up`` (target armature-space up axis: keep the target's heading; optional), ``iterations`` (optional),
``rest_prior`` (weight of the rest-pose proximity bonus in matching; default ``REST_PRIOR`` for
transfer_motion, 0 for align_pose, whose source shape is posed rather than at rest).
Outputs: ``rotations`` (T, B, 4) pose-bone quaternions (w, x, y, z), ``locations`` (T, B, 3),
``residuals`` (T,) in target armature units; info adds the feet's contact quality when ``up`` is given (% of
the height: ``sliding`` / ``source_sliding`` per frame, ``ground_sliding`` / ``source_ground_sliding`` the same
against the ground (an in-place walk's treadmill taken away), worst ``penetration`` below and ``float`` above
the target's floor).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sa3df.core.progress import report, sub_progress
from sa3df.service import protocol as keys
from sa3df.service.context import JobContext, JobOutput
from sa3df.service.feature_service import clean_notes, feature_settings, features_for_job

# Both skins arrive at rest, so matching adds a bounded bonus for candidates at the same place in the
# normalised rest shapes (sa3df.apps.match.RestProximity): man -> woman joint error 1.56 % -> 0.88 % of height.
REST_PRIOR = 0.2


def _target_rig(ctx: JobContext):
    from sa3df.motion.rig import Rig

    arrays, names = ctx.inputs, list(ctx.params.get("bone_names") or [])
    parents, rest_matrices, rest_vertices, weights, faces, connected = keys.RIG_KEYS
    missing = [k for k in (parents, rest_matrices, rest_vertices, weights) if k not in arrays]
    if missing:
        raise ValueError(f"The motion job got no target rig ({', '.join(missing)} missing)")
    return Rig(
        bone_names=names, parents=arrays[parents], rest_matrices=arrays[rest_matrices],
        rest_vertices=arrays[rest_vertices], weights=arrays[weights],
        faces=arrays.get(faces), connected=arrays.get(connected),
        name=str(ctx.params.get("target_name", "target")),
    )


def _matches(ctx: JobContext, share: float, rest_prior: float, rig):
    """Target -> source vertex ids (input order) and confidences from surface features; the target's pieces
    are joined where its rig joins them (:func:`sa3df.apps.landmarks.rig_piece_links`)."""
    from sa3df.apps.landmarks import rig_piece_links
    from sa3df.apps.match import input_vertex_matches

    meshes, result = features_for_job(ctx, share=share)
    if len(meshes) != 2:
        raise ValueError(f"The motion job needs a source and a target mesh, got {len(meshes)}")
    if meshes[1].input_vertex_count == rig.n_vertices:  # (a mismatch is refused after the match)
        links = rig_piece_links(meshes[1], rig.weights[meshes[1].input_index], rig.parents)
        meshes = [meshes[0], dataclasses.replace(meshes[1], piece_links=links)]
    report(ctx.progress, share, "matching the surfaces")
    matches, confidence, corr = input_vertex_matches(
        *meshes, result.embeddings[0], result.embeddings[1],
        rest_prior=float(ctx.params.get("rest_prior", rest_prior)), up=feature_settings(ctx.params).up_axis or "y")
    return matches, confidence, meshes, corr


def _fit(ctx: JobContext, rest_prior: float) -> JobOutput:
    from sa3df.motion.fit import MotionConfig, fit_motion

    rig = _target_rig(ctx)
    frames = np.asarray(ctx.inputs.get(keys.SOURCE_FRAMES), dtype=np.float64)
    if frames.ndim != 3:
        raise ValueError("The motion job got no source frames")
    matches, confidence, meshes, corr = _matches(ctx, share=0.6, rest_prior=rest_prior, rig=rig)
    if len(matches) != rig.n_vertices:
        raise ValueError(f"Target mesh has {len(matches)} vertices but its rig has {rig.n_vertices}")
    settings = dict(placement=ctx.params.get("placement", "origin"),
                    device=feature_settings(ctx.params).device)
    if ctx.params.get("scale"):
        settings.update(scale=float(ctx.params["scale"]), fit_scale=False)
    if ctx.params.get("up") is not None:
        settings.update(up=tuple(float(x) for x in ctx.params["up"]))
    if ctx.params.get("iterations") is not None:
        settings.update(iterations=int(ctx.params["iterations"]))
    result = fit_motion(rig, frames, matches, confidence, MotionConfig(**settings),
                        progress=sub_progress(ctx.progress, 0.62, 1.0))
    arrays = {keys.ROTATIONS: result.rotations.astype(np.float32), keys.LOCATIONS: result.locations.astype(np.float32),
              keys.RESIDUALS: result.residuals.astype(np.float32)}
    info = {"frames": int(len(frames)), "scale": round(result.scale, 4), **_feet(rig, result, frames, settings),
            "mean_residual": round(float(result.normalized_residuals.mean()), 4),
            "mutual_fraction": round(float(np.mean(corr.mutual)), 3), "cleaned": clean_notes(meshes)}
    return JobOutput(arrays, info)


def _feet(rig, result, frames, settings) -> dict:
    """Contact quality of a fitted clip (% of height): foot sliding of target and source, and how far each
    frame's lowest point gets below or above the target's floor (sa3df.motion.contacts.floor_report)."""
    from sa3df.motion.contacts import floor_report, heights
    from sa3df.motion.skinning import pose_rig

    up = settings.get("up")
    if up is None or len(frames) < 2:
        return {}
    verts, _ = pose_rig(rig, result.local_matrices())
    rest_h = heights(rig.rest_vertices, up)
    mine = floor_report(verts, up, float(rest_h.min()), float(np.ptp(rest_h)))
    source_h = heights(frames[0], up)
    theirs = floor_report(frames, up, float(np.median(heights(frames, up).min(1))), float(np.ptp(source_h)))
    return {"sliding": round(100 * mine["sliding"], 3), "source_sliding": round(100 * theirs["sliding"], 3),
            "ground_sliding": round(100 * mine["ground_sliding"], 3),
            "source_ground_sliding": round(100 * theirs["ground_sliding"], 3),
            "penetration": round(100 * mine["penetration_max"], 2), "float": round(100 * mine["float_max"], 2)}


def transfer_motion_job(ctx: JobContext) -> JobOutput:
    """Fit the target rig to every source frame (see the module docstring for inputs and outputs)."""
    return _fit(ctx, rest_prior=REST_PRIOR)


def align_pose_job(ctx: JobContext) -> JobOutput:
    """Pose the target rig like one static source shape (``source_frames`` with T = 1)."""
    frames = ctx.inputs.get(keys.SOURCE_FRAMES)
    if frames is None or len(frames) != 1:
        raise ValueError("Align Pose takes exactly one source shape")
    return _fit(ctx, rest_prior=0.0)
