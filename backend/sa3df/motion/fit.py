"""Motion transfer and pose alignment by fitting a target rig's skinned surface to a source surface.

No bone map: a dense correspondence (target vertex -> source vertex, with a confidence) says which part of
the target should go where. :func:`fit_motion` finds, for every frame at once, the target's local bone
rotations and root motion that bring its skinned vertices onto their matched source vertices:

1. **Placement**: the source clip is expressed in the target's armature space, centred on the target and
   scaled to its size (one scale for the clip, refined later), so the target moves *like* the source
   wherever it stands.
2. **Closed-form start**: per bone and frame, the rotation that best carries the bone's skinned rest
   vertices onto their matches (weighted Kabsch) gives global bone rotations; the kinematic chain turns them
   into local ones (bones without enough skin inherit their parent's, i.e. stay at rest).
3. **Refinement**, all frames batched in torch with Adam: a robust (Charbonnier, trimmed) vertex term, a
   per-bone matched-centroid term (averages out wrong matches), edge-length preservation, temporal
   smoothness of joints and rotations, a small prior that keeps unobservable twists at rest, and a pull
   that keeps IK-style controls (a foot hanging from the root) at the end of their limb chains.
4. **Space-time re-matching** between short refinement passes: once the target moves like the source, a
   match that strays far from its target vertex over the clip is replaced by the source vertex that stays
   nearest (features confuse look-alike parts; their motion tells them apart). Then the final pass.

Lengths inside the fitter are in units of the target's rest bounding-box diagonal; results are in the
target's armature units. Rotations come back as Blender pose-bone quaternions (w, x, y, z).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sa3df.core.device import choose_device, cpu_threads, idle_thread_count
from sa3df.core.progress import ProgressFn, report, sub_progress
from sa3df.motion.contacts import LIFT, ContactGoals, clip_floor, heights
from sa3df.motion.terms import Problem, refine, rematch, robust_start
from sa3df.motion.rig import Rig
from sa3df.motion.skinning import TorchRig, local_matrices
from sa3df.motion.rotations import continuous_quaternions, matrix_from_6d, quaternion_from_matrix, six_from_matrix


@dataclass
class MotionConfig:
    """Knobs of the fit. Weights are relative to the vertex term; lengths are fractions of target size."""

    iterations: int = 200  # Adam steps of the final pass
    learning_rate: float = 0.01
    translation_learning_rate: float = 0.003
    max_vertices: int = 800  # vertices sampled (by confidence) for the loss; all are used for residuals
    max_edges: int = 800
    robust_scale: float = 0.01  # Charbonnier knee, fraction of target size
    trim_fraction: float = 0.1  # per frame, the worst matches are ignored after the first third
    centroid_weight: float = 1.0
    edge_weight: float = 0.01
    smooth_weight: float = 0.05
    rotation_smooth_weight: float = 1e-3
    # Jumps: a bone's local rotation changing by more than flip_angle degrees between frames (or by more
    # than the source's matched skin of the bone or its parent turns, when that is more) costs this much
    # per unit of excess spin, summed over frames: a hinge, natural motion below the limit is not slowed.
    flip_weight: float = 1.0
    flip_angle: float = 20.0
    rest_prior_weight: float = 1e-6
    twist_prior_weight: float = 1e-5
    # A wrong match stays wrong in every frame: vertices whose fitted residual is large over the whole clip
    # are down-weighted (Cauchy weights, scale = 2 x median) and the start refitted, this many times.
    reweight_rounds: int = 2
    # Space-time re-matching between short Adam passes (see fit_motion); 0 keeps the given matches.
    rematch_rounds: int = 2
    rematch_frames: int = 8
    rematch_iterations: int = 40  # Adam steps before each re-match
    rematch_tolerance: float = 2.0  # a given match is kept while no more than this times the nearest's distance
    start_time_window: int = 5  # frames whose per-bone covariances are averaged in the start
    start_prior: float = 0.05  # pull of the closed-form start towards the rest pose (relative)
    # Bones with fewer matched skinned vertices (in the loss sample) than both of these follow their parent
    # in the start: a handful of (often wrong) matches on a finger says less than the hand it hangs from.
    min_bone_vertices: int = 4
    min_bone_share: float = 0.015
    follow_parent: bool = False  # ... and keep following it (rest relative to it) through the refinement
    # IK-style controls: a translating bone whose rest head sits on another bone's head (within
    # attach_distance x size; e.g. a foot hanging from the root at the end of its leg) is kept there.
    attach_weight: float = 1.0
    attach_distance: float = 0.005
    fit_scale: bool = True
    scale: float | None = None  # fixed source -> target scale (skips the estimate)
    # "centroid": the source's first-frame centre lands on the target's rest centre, scaled about it.
    # "origin": the caller already put the source's origin (floor point) on the target's armature origin;
    #           only scale about that origin. "none": use the source frames exactly as given (scale 1).
    placement: str = "centroid"
    # Armature-space up axis (e.g. world Z mapped into the target armature): when given, the source is
    # first turned about it to face the way the target does, so the target keeps its heading.
    up: tuple | None = None
    # Feet on the floor (sa3df.motion.contacts; needs ``up`` and "origin" placement, i.e. a clip): the
    # source's floor is put on the target's, and target vertices matched to the source's ground contacts
    # keep their rest height above it and do not slide while the contact lasts; nothing goes below it.
    contact_weight: float = 1.0
    device: str = "auto"
    seed: int = 0


@dataclass
class MotionResult:
    """A fitted clip on the target rig.

    ``rotations`` (T, B, 4) local (pose-bone) quaternions (w, x, y, z), sign-continuous in time;
    ``locations`` (T, B, 3) pose-bone locations (each bone's rest frame, armature units; non-zero only for
    ``translating`` bones: roots and bones hanging from unskinned ones); ``joint_positions`` (T, B, 3) posed bone heads
    in armature space; ``scale`` the source -> target scale; ``residuals`` (T,) mean distance between
    matched target and (placed) source vertices in armature units, and ``normalized_residuals`` the same
    divided by the target's size; ``vertex_residuals`` (Nt,) each target vertex's distance to its match over
    the clip, / size (NaN where it had no usable match); ``placed_source`` (T, Nt, 3) each target vertex's
    match, placed.
    """

    bone_names: list[str]
    root: int
    rotations: np.ndarray
    locations: np.ndarray
    translating: list[int]
    joint_positions: np.ndarray
    scale: float
    residuals: np.ndarray
    normalized_residuals: np.ndarray
    vertex_residuals: np.ndarray
    placed_source: np.ndarray

    def local_matrices(self) -> np.ndarray:
        """(T, B, 4, 4) pose-bone basis matrices (what :func:`sa3df.motion.skinning.pose_rig` takes)."""
        from sa3df.motion.rotations import matrix_from_quaternion

        t, b = self.rotations.shape[:2]
        local = np.tile(np.eye(4), (t, b, 1, 1))
        local[..., :3, :3] = matrix_from_quaternion(self.rotations)
        local[..., :3, 3] = self.locations
        return local

    @property
    def root_location(self) -> np.ndarray:
        """(T, 3) the main root bone's pose location."""
        return self.locations[:, self.root]


def fit_motion(
    target: Rig,
    source_frames: np.ndarray,
    target_to_source: np.ndarray,
    weights: np.ndarray | None = None,
    config: MotionConfig | None = None,
    progress: ProgressFn | None = None,
) -> MotionResult:
    """Fit the target rig to a source surface clip through a correspondence.

    ``source_frames`` (T, Ns, 3): the source's deformed vertices per frame, in the *target's armature
    space* (the caller maps world space there, which also reconciles centimetre and metre rigs);
    ``target_to_source`` (Nt,) int: each target vertex's matched source vertex; ``weights`` (Nt,) >= 0: match
    confidence (0 drops a match, e.g. non-mutual ones). Raises ``ValueError`` naming inconsistent inputs.
    """
    config = config or MotionConfig()
    frames, matches, conf = _validate(target, source_frames, target_to_source, weights)
    device = choose_device(config.device)
    with cpu_threads(_fit_threads(device)):
        return _fit(target, frames, matches, conf, config, device, progress)


def _fit_threads(device: torch.device) -> int | None:
    """One torch thread per idle CPU on a CPU device (None elsewhere: as set). Threads on busy cores
    spin-wait: on this project's 2 loaded cores, two threads took 11x the CPU time of one for a 250-frame fit
    (204 s against 18.6 s)."""
    return idle_thread_count() if device.type == "cpu" else None


def _fit(target: Rig, frames, matches, conf, config: MotionConfig, device, progress) -> MotionResult:
    """:func:`fit_motion` on validated inputs."""
    gen = torch.Generator().manual_seed(config.seed)
    size = target.size
    model = TorchRig(target, device=device, unit=size)
    as_t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32, device=device)  # noqa: E731

    report(progress, 0.0, "placing the source")
    rest = target.rest_vertices / size
    if config.up is not None and config.placement != "none":
        frames = _face_like_target(frames, rest * size, matches, conf, config)
    matched = frames[:, matches] / size  # (T, Nt, 3), target-size units
    src_centre, tgt_centre, scale0 = _placement(target, rest, matched, conf, config)
    on_floor = config.contact_weight > 0 and config.up is not None and config.placement == "origin"
    if on_floor:  # the source's floor onto the target's: scale about the floor point under the origin
        up = np.asarray(config.up, dtype=np.float64) / np.linalg.norm(config.up)
        floor, tall = heights(rest, up).min(), np.ptp(heights(rest, up))
        src_centre, tgt_centre = clip_floor(frames / size, up) * up, floor * up
        lift = scale0 * (heights(frames / size, up).min(axis=1) - clip_floor(frames / size, up))

    def build(matched, conf):
        # With the floor kept, every sole vertex (as low at rest as a contact lifts) is posed: one left out
        # of the sample could go through the floor unseen (the wolf's front paw sank 1.1 % of its height).
        soles = np.flatnonzero(target.skinned & (heights(rest, up) - floor < LIFT * tall)) if on_floor else ()
        problem = Problem.build(target, model, matched, conf, config, gen, soles)
        if on_floor:
            placed = scale0 * (matched[:, problem.sample] - src_centre) + tgt_centre
            posed_rest = rest[problem.ids.cpu().numpy()]
            problem.contacts = ContactGoals.build(placed, posed_rest, up, floor, tall, lift, target,
                                                  target.weights[problem.ids.cpu().numpy()], device)
        return problem

    free = target.translating_bones()
    report(progress, 0.05, "closed-form start")
    problem = build(matched, conf)
    src_c, tgt_c = as_t(src_centre), as_t(tgt_centre)
    with torch.no_grad():
        rotations, locations, c = robust_start(model, target, problem, scale0, src_c, tgt_c, free, config)
    scale = scale0
    passes = [config.rematch_iterations] * config.rematch_rounds + [config.iterations]
    done, total = 0, max(sum(passes), 1)
    for k, iterations in enumerate(passes):
        if k > 0:
            # Re-match in space-time: the fitted target now moves like the source, so a target vertex whose
            # match strays far from it over the clip takes the source vertex that stays closest instead
            # (feature errors between similar-looking parts, e.g. hands and forearms, are undone by their
            # different motion). The pose so far is kept as the start of the next pass.
            with torch.no_grad():
                matches, conf = rematch(model, rotations, free, locations, frames / size, scale, src_centre,
                                        tgt_centre, matches, conf, config)
            matched = frames[:, matches] / size
            problem = build(matched, conf)
            c = problem.c
        stage = sub_progress(progress, 0.1 + 0.8 * done / total, 0.1 + 0.8 * (done + iterations) / total)
        rotations, locations, scale = refine(model, problem, c, rotations, locations, scale, free, src_c, tgt_c,
                                             config, iterations, stage)
        done += iterations

    report(progress, 0.9, "evaluating")
    return _result(target, model, six_from_matrix(rotations), free, locations, scale, matched, conf,
                   src_centre, tgt_centre, size)


def align_pose(
    target: Rig,
    shape: np.ndarray,
    target_to_source: np.ndarray,
    weights: np.ndarray | None = None,
    config: MotionConfig | None = None,
    progress: ProgressFn | None = None,
) -> MotionResult:
    """Pose the target rig like one static shape (Ns, 3) given in the target's armature space: the same fit
    as :func:`fit_motion` with a single frame (results have T = 1)."""
    return fit_motion(target, np.asarray(shape)[None], target_to_source, weights, config, progress)


def _validate(target: Rig, frames, matches, weights):
    frames = np.asarray(frames, dtype=np.float64)
    if frames.ndim != 3 or frames.shape[2] != 3 or len(frames) == 0:
        raise ValueError(f"source frames must be (T, Ns, 3) with T >= 1, got shape {frames.shape}")
    matches = np.asarray(matches, dtype=np.int64)
    if matches.shape != (target.n_vertices,):
        raise ValueError(
            f"Rig '{target.name}' has {target.n_vertices} vertices but the correspondence has {matches.shape}"
        )
    if matches.min() < 0 or matches.max() >= frames.shape[1]:
        raise ValueError(f"correspondence indices must lie in [0, {frames.shape[1] - 1}] (source vertices)")
    conf = np.ones(target.n_vertices) if weights is None else np.asarray(weights, dtype=np.float64)
    if conf.shape != (target.n_vertices,) or (conf < 0).any() or not np.isfinite(conf).all():
        raise ValueError(f"match weights must be ({target.n_vertices},), finite and non-negative")
    conf = conf * target.skinned  # unskinned vertices cannot move: they carry no information
    if (conf > 0).sum() < 3:
        raise ValueError(f"Rig '{target.name}': fewer than 3 skinned vertices have a usable match")
    if not np.isfinite(frames).all():
        raise ValueError("source frames contain non-finite coordinates")
    return frames, matches, conf


def _placement(target: Rig, rest, matched, conf, config):
    """(source centre, target centre, scale): where and how big the source is drawn on the target."""
    if config.placement not in ("centroid", "origin", "none"):
        raise ValueError(f"placement must be 'centroid', 'origin' or 'none', not '{config.placement}'")
    if config.placement == "none":
        return np.zeros(3), np.zeros(3), 1.0
    scale = _scale_estimate(target, rest, matched[0], conf) if config.scale is None else float(config.scale)
    if config.placement == "origin":
        return np.zeros(3), np.zeros(3), scale
    w = conf / conf.sum()
    return w @ matched[0], w @ rest, scale


def _face_like_target(frames, rest, matches, conf, config) -> np.ndarray:
    """The source clip turned about the ``config.up`` axis (through the armature origin, or the matched
    centroid for "centroid" placement) to face the way the target's rest pose does: the yaw that best maps
    the matched source points onto the target's across ``up``, over the clip (each frame centred).

    The turn is kept only when it fits clearly better (by ``orient.KEEP_MARGIN``) than none: a walk's
    own sway turns single frames by ±20°, which must not become a heading offset for the whole clip.
    """
    from sa3df.core.orient import KEEP_MARGIN

    up = np.asarray(config.up, dtype=np.float64)
    if up.shape != (3,) or np.linalg.norm(up) == 0:
        raise ValueError(f"up must be a non-zero 3-vector, got {config.up!r}")
    up = up / np.linalg.norm(up)
    w = conf / conf.sum()
    flat = lambda x: (x - w @ x) - np.outer((x - w @ x) @ up, up)  # noqa: E731  centred, across up
    picks = np.unique(np.linspace(0, len(frames) - 1, min(len(frames), 32)).round().astype(int))
    src = [flat(frames[i][matches]) for i in picks]
    tgt = flat(rest)
    cov = sum((tgt * w[:, None]).T @ s for s in src)  # sum over frames of sum_v w t s^T
    a = np.cross(up, [1.0, 0.0, 0.0] if abs(up[0]) < 0.9 else [0.0, 1.0, 0.0])
    a /= np.linalg.norm(a)
    b = np.cross(up, a)
    angle = np.arctan2(b @ cov @ a - a @ cov @ b, a @ cov @ a + b @ cov @ b)
    k = np.array([[0, -up[2], up[1]], [up[2], 0, -up[0]], [-up[1], up[0], 0]])
    turn = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k
    misfit = lambda r: sum(w @ ((s @ r.T - tgt) ** 2).sum(1) for s in src)  # noqa: E731
    if misfit(turn) > (1 - KEEP_MARGIN) * misfit(np.eye(3)):
        return frames
    pivot = w @ frames[0][matches] if config.placement == "centroid" else np.zeros(3)
    return (frames - pivot) @ turn.T + pivot


def _scale_estimate(target: Rig, rest, matched, conf) -> float:
    """Source -> target size ratio that does not depend on pose: per bone, the spread of its skinned rest
    vertices over the spread of their matches (rigid within a bone), then a mass-weighted median."""
    core = (target.weights > 0.5) * conf[:, None]  # (N, B)
    mass = core.sum(0)
    bones = np.flatnonzero((core > 0).sum(0) >= 4)
    if len(bones) == 0:
        raise ValueError(f"Rig '{target.name}': no bone has 4 matched skinned vertices to measure scale")
    ratios = []
    for b in bones:
        w = core[:, b] / mass[b]
        spread = lambda x: np.sqrt(w @ ((x - w @ x) ** 2).sum(1))  # noqa: E731
        ratios.append(spread(rest) / max(spread(matched), 1e-12))
    ratios, weights = np.array(ratios), mass[bones]
    order = np.argsort(ratios)
    cumulative = np.cumsum(weights[order])
    return float(ratios[order][np.searchsorted(cumulative, cumulative[-1] / 2)])


def _result(target, model, six, free, locations, scale, matched, conf, src_centre, tgt_centre, size) -> MotionResult:
    """Evaluate the fit on every vertex and convert to Blender's pose-bone terms (armature units)."""
    rot = matrix_from_6d(six)
    with torch.no_grad():
        joints, residuals, per_vertex = [], [], 0.0
        placed = scale * (matched - src_centre) + tgt_centre
        valid = torch.as_tensor(conf > 0)
        for start in range(0, rot.shape[0], 32):  # frames in chunks: (T, N, B) products stay small
            chunk = slice(start, start + 32)
            verts, heads = model.pose(local_matrices(rot[chunk], free, locations[chunk]))
            q = torch.as_tensor(placed[chunk], dtype=verts.dtype, device=verts.device)
            distance = (verts - q).norm(dim=-1)
            residuals.append(distance[:, valid.to(verts.device)].mean(1).cpu())
            per_vertex = per_vertex + distance.sum(0).cpu().numpy().astype(np.float64)
            joints.append(heads.cpu())
    rotations = continuous_quaternions(quaternion_from_matrix(rot.cpu().numpy().astype(np.float64)))
    all_locations = np.zeros(rotations.shape[:2] + (3,))
    all_locations[:, free] = locations.cpu().numpy().astype(np.float64) * size
    residual = torch.cat(residuals).numpy().astype(np.float64)
    return MotionResult(
        bone_names=list(target.bone_names),
        root=target.root,
        rotations=rotations,
        locations=all_locations,
        translating=list(free),
        joint_positions=torch.cat(joints).numpy().astype(np.float64) * size,
        scale=scale,
        residuals=residual * size,
        normalized_residuals=residual,
        vertex_residuals=np.where(conf > 0, per_vertex / rot.shape[0], np.nan),
        placed_source=placed * size,
    )
