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
   smoothness of joints and rotations, and a small prior that keeps unobservable twists at rest.

Lengths inside the fitter are in units of the target's rest bounding-box diagonal; results are in the
target's armature units. Rotations come back as Blender pose-bone quaternions (w, x, y, z).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .device import choose_device
from .progress import ProgressFn, report, sub_progress
from .rig import Rig, TorchRig, apply_to_frames, local_matrices
from .rotations import (
    continuous_quaternions, matrix_from_6d, nearest_rotation, quaternion_from_matrix, six_from_matrix,
    weighted_covariances,
)


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
    rest_prior_weight: float = 1e-6
    twist_prior_weight: float = 1e-5
    # A wrong match stays wrong in every frame: vertices whose fitted residual is large over the whole clip
    # are down-weighted (Cauchy weights, scale = 2 x median) and the start refitted, this many times.
    reweight_rounds: int = 2
    # Matches that land on another part of the source move with that part, not with the rest of their
    # target bone: per bone, the source points' motion over the clip is fitted rigidly (robustly, this many
    # rounds) and points that do not follow it are down-weighted. Needs T > 1; 0 turns it off.
    rigidity_rounds: int = 0
    # Space-time re-matching after the closed-form start (see fit_motion); 0 keeps the given matches.
    rematch_rounds: int = 2
    rematch_frames: int = 8
    rematch_iterations: int = 40  # Adam steps before each re-match
    rematch_tolerance: float = 2.0  # a given match is kept while no more than this times the nearest's distance
    start_prior: float = 0.05  # pull of the closed-form start towards the rest pose (relative)
    min_bone_vertices: int = 4  # bones with fewer matched skinned vertices follow their parent
    fit_scale: bool = True
    scale: float | None = None  # fixed source -> target scale (skips the estimate)
    # "centroid": the source's first-frame centre lands on the target's rest centre, scaled about it.
    # "origin": the caller already put the source's origin (floor point) on the target's armature origin;
    #           only scale about that origin. "none": use the source frames exactly as given (scale 1).
    placement: str = "centroid"
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
    divided by the target's size; ``placed_source`` (T, Nt, 3) each target vertex's match, placed.
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
    placed_source: np.ndarray

    def local_matrices(self) -> np.ndarray:
        """(T, B, 4, 4) pose-bone basis matrices (what :func:`sa3df.rig.pose_rig` takes)."""
        from .rotations import matrix_from_quaternion

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
    gen = torch.Generator().manual_seed(config.seed)
    size = target.size
    model = TorchRig(target, device=device, unit=size)
    as_t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32, device=device)  # noqa: E731

    report(progress, 0.0, "placing the source")
    matched = frames[:, matches] / size  # (T, Nt, 3), target-size units
    rest = target.rest_vertices / size
    src_centre, tgt_centre, scale0 = _placement(target, rest, matched, conf, config)

    free = target.translating_bones()
    report(progress, 0.05, "closed-form start")
    problem = _Problem.build(target, model, matched, conf, config, gen)
    src_c, tgt_c = as_t(src_centre), as_t(tgt_centre)
    with torch.no_grad():
        rotations, locations, c = _robust_start(model, target, problem, scale0, src_c, tgt_c, free, config)
    scale = scale0
    passes = [config.rematch_iterations] * (config.rematch_rounds if len(frames) > 1 else 0) + [config.iterations]
    done, total = 0, max(sum(passes), 1)
    for k, iterations in enumerate(passes):
        if k > 0:
            # Re-match in space-time: the fitted target now moves like the source, so a target vertex whose
            # match strays far from it over the clip takes the source vertex that stays closest instead
            # (feature errors between similar-looking parts, e.g. hands and forearms, are undone by their
            # different motion). The pose so far is kept as the start of the next pass.
            with torch.no_grad():
                matches, conf = _rematch(model, rotations, free, locations, frames / size, scale, src_centre,
                                         tgt_centre, matches, conf, config)
            matched = frames[:, matches] / size
            problem = _Problem.build(target, model, matched, conf, config, gen)
            c = problem.c
        stage = sub_progress(progress, 0.1 + 0.8 * done / total, 0.1 + 0.8 * (done + iterations) / total)
        rotations, locations, scale = _refine(model, problem, c, rotations, locations, scale, free, src_c, tgt_c,
                                              config, iterations, stage)
        done += iterations

    report(progress, 0.9, "evaluating")
    return _result(target, model, six_from_matrix(rotations), free, locations, scale, matched, conf,
                   src_centre, tgt_centre, size)


def _refine(model: TorchRig, problem: "_Problem", c, rotations, locations, scale, free, src_c, tgt_c, config,
            iterations: int, progress: ProgressFn | None):
    """Adam on all frames at once from the given pose; returns (rotations (T, B, 3, 3), locations, scale)."""
    six = six_from_matrix(rotations).clone().requires_grad_(True)
    locations = locations.clone().requires_grad_(True)
    log_scale = torch.tensor(float(np.log(scale)), device=c.device,
                             requires_grad=config.fit_scale and config.placement != "none")
    params = [{"params": [six], "lr": config.learning_rate},
              {"params": [locations], "lr": config.translation_learning_rate}]
    if log_scale.requires_grad:
        params.append({"params": [log_scale], "lr": config.translation_learning_rate})
    optimiser = torch.optim.Adam(params, betas=(0.9, 0.99))  # short memory: gradients shrink a lot as it fits
    # Cosine decay to 5 %: large early steps, then settle without Adam's end-of-run jitter.
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda i: 0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * min(i / max(iterations, 1), 1.0)))
    )
    ids, n_data, edge_rows, q_raw = problem.ids, problem.n_data, problem.edge_rows, problem.q_raw
    rest_edges = model.rest_vertices[ids][edge_rows]
    rest_len = (rest_edges[:, 0] - rest_edges[:, 1]).norm(dim=-1)
    bone_w = model.weights[ids][:n_data] * c[:, None]  # (n, B) per-bone centroid weights
    for it in range(iterations):
        rot = matrix_from_6d(six)
        q = log_scale.exp() * (q_raw - src_c) + tgt_c
        verts, joints = model.pose(local_matrices(rot, free, locations), ids)
        trim = config.trim_fraction if it >= iterations // 3 else 0.0
        # The centroid term steers while matches are far off; it fades out by mid-run because, being an
        # average, it pins each bone's centre and slows the last (twist) refinements.
        centroid = config.centroid_weight * max(0.0, 1.0 - 2.0 * it / max(iterations, 1))
        loss = _data_terms(verts[:, :n_data], q, c, bone_w, centroid, config.robust_scale, trim)
        loss = loss + config.edge_weight * _edge_term(verts, edge_rows, rest_len)
        loss = loss + _smooth_terms(joints, rot, config) + _prior_terms(rot, config)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if it % 10 == 0:
            report(progress, it / iterations, f"fitting ({it}/{iterations})")
    return matrix_from_6d(six.detach()), locations.detach(), float(log_scale.detach().exp())


@dataclass
class _Problem:
    """The sampled data of one fit: posed vertex ids (loss sample first), edges, matches and confidences."""

    sample: np.ndarray
    ids: torch.Tensor
    n_data: int
    edge_rows: torch.Tensor
    q_raw: torch.Tensor  # (T, n, 3) matched source points of the sample, size units, not yet placed
    c: torch.Tensor  # (n,) confidences

    @classmethod
    def build(cls, target: Rig, model: TorchRig, matched, conf, config, gen) -> "_Problem":
        device = model.device
        sample, edges = _sample(target, conf, config, gen)
        extra = np.setdiff1d(np.unique(edges), sample)
        order = np.concatenate([sample, extra])
        row_of = np.full(target.n_vertices, -1, dtype=np.int64)
        row_of[order] = np.arange(len(order))
        as_t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32, device=device)  # noqa: E731
        return cls(sample, torch.as_tensor(order, device=device), len(sample),
                   torch.as_tensor(row_of[edges], device=device).reshape(-1, 2), as_t(matched[:, sample]),
                   as_t(conf[sample]))


def _robust_start(model, target, problem: _Problem, scale, src_c, tgt_c, free, config):
    """Closed-form start with rigidity and consistency re-weighting; returns (rotations, locations, c)."""
    q0 = scale * (problem.q_raw - src_c) + tgt_c
    c = problem.c
    data_ids = problem.ids[: problem.n_data]
    if config.rigidity_rounds > 0 and q0.shape[0] > 1:
        c = c * _rigidity_weights(model.weights[data_ids], q0, c, config.rigidity_rounds)
    rotations, locations = _closed_form_start(model, target, problem.sample, q0, c, free, config)
    for _ in range(config.reweight_rounds):
        c = c * _consistency_weights(model, data_ids, rotations, free, locations, q0, c)
        rotations, locations = _closed_form_start(model, target, problem.sample, q0, c, free, config)
    return rotations, locations, c


def _rematch(model, rotations, free, locations, frames, scale, src_centre, tgt_centre, matches, conf, config):
    """(matches (Nt,), confidences (Nt,)): nearest source vertex of each posed target vertex over up to
    ``config.rematch_frames`` frames at once (coordinates stacked), Gaussian confidence of the distance."""
    from scipy.spatial import cKDTree

    t = rotations.shape[0]
    edges = model.rig.edges()
    rest = model.rest_vertices.cpu().numpy()
    edge_length = float(np.linalg.norm(rest[edges[:, 0]] - rest[edges[:, 1]], axis=1).mean()) if len(edges) else 0.0
    picks = np.unique(np.linspace(0, t - 1, min(t, config.rematch_frames)).round().astype(int))
    verts, _ = model.pose(local_matrices(rotations[picks], free, locations[picks]))
    posed = verts.cpu().numpy().astype(np.float64)  # (K, Nt, 3)
    placed = scale * (frames[picks] - src_centre) + tgt_centre  # (K, Ns, 3)
    stack = lambda x: np.transpose(x, (1, 0, 2)).reshape(x.shape[1], -1)  # noqa: E731
    distance, nearest = cKDTree(stack(placed)).query(stack(posed))
    current = np.linalg.norm(stack(posed) - stack(placed[:, matches]), axis=1)
    # Keep a given match unless its source vertex strays clearly further than the nearest one: the
    # given (feature) match knows the semantics, space-time nearness only corrects what it got wrong.
    # (and always while it is within a couple of edge lengths or typical: exact matches must survive).
    typical = max(2.0 * np.median(current[conf > 0]), 2.0 * edge_length)
    keep = current <= np.maximum(config.rematch_tolerance * distance, typical) + 1e-9
    matches = np.where(keep, matches, nearest)
    distance = np.where(keep, current, distance) / np.sqrt(len(picks))
    sigma = 2.0 * np.median(distance[conf > 0]) + 1e-9
    return matches, np.exp(-((distance / sigma) ** 2)) * (conf > 0)


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


def _sample(target: Rig, conf, config, gen):
    """Loss vertices (chosen by confidence, without replacement) and a random subset of mesh edges."""
    usable = np.flatnonzero(conf > 0)
    if len(usable) > config.max_vertices:
        p = torch.as_tensor(conf[usable], dtype=torch.float64)
        usable = np.sort(usable[torch.multinomial(p, config.max_vertices, generator=gen).numpy()])
    edges = target.edges()
    in_sample = np.zeros(target.n_vertices, dtype=bool)
    in_sample[usable] = True
    edges = edges[in_sample[edges].any(axis=1)]  # edges touching the sample: few extra vertices to pose
    if len(edges) > config.max_edges:
        edges = edges[np.sort(torch.randperm(len(edges), generator=gen)[: config.max_edges].numpy())]
    return usable, edges


def _closed_form_start(model: TorchRig, target: Rig, sample, q, c, free, config):
    """Initial local rotations (T, B, 3, 3) and translating-bone locations (T, F, 3) from per-bone
    weighted Kabsch fits of skinned rest vertices onto their matches."""
    t, b = q.shape[0], target.n_bones
    ids = torch.as_tensor(sample)
    w, rest = model.weights[ids], model.rest_vertices[ids]  # (n, B), (n, 3)
    core = (w > 0.3) & (c[:, None] > 0)
    supported = (core.sum(0) >= config.min_bone_vertices).tolist()
    bone_w = (w * w * c[:, None] * core).T  # (B, n)
    cov, rest_mean, match_mean = weighted_covariances(rest, q, bone_w)
    # Pull each bone towards its parent's rotation (= its rest pose relative to the parent) with a small
    # weight: it decides what the points leave open (the twist of a thin limb, a degenerate set), so
    # independent frames cannot pick opposite twists.
    spread = (bone_w * ((rest[None] - rest_mean[:, None]) ** 2).sum(-1)).sum(1) / bone_w.sum(1).clamp_min(1e-12)
    rest_rot = model.rest[:, :3, :3]
    eye = torch.eye(3, device=q.device).expand(t, 3, 3)
    glob: list[torch.Tensor] = []
    local = []
    fits = []
    for bone, parent in enumerate(target.parents):
        parent_glob = eye if parent < 0 else glob[parent]
        prior = config.start_prior * spread[bone] * parent_glob
        mine = nearest_rotation(cov[:, bone] + prior) if supported[bone] else parent_glob
        glob.append(mine)
        fits.append(mine)
        rb = rest_rot[bone]
        local.append(rb.T @ parent_glob.transpose(-1, -2) @ mine @ rb)
    fits = torch.stack(fits, dim=1)
    rotations = torch.stack(local, dim=1)
    locations = q.new_zeros(t, len(free), 3)
    for k, bone in enumerate(free):  # parents first, so each bone sees its ancestors already placed
        if not supported[bone]:
            continue
        posed = model.bone_matrices(local_matrices(rotations, free, locations))
        parent = target.parents[bone]
        frame = model.offsets[bone].expand(t, 4, 4) if parent < 0 else posed[:, parent] @ model.offsets[bone]
        head = (fits[:, bone] @ (model.rest[bone, :3, 3] - rest_mean[bone])[:, None])[..., 0] + match_mean[:, bone]
        locations[:, k] = ((head - frame[:, :3, 3])[:, None, :] @ frame[:, :3, :3])[:, 0]
    return rotations, locations


def _rigidity_weights(weights: torch.Tensor, q: torch.Tensor, c: torch.Tensor, rounds: int) -> torch.Tensor:
    """(n,) weights: how well each matched source point follows the rigid motion (frame 0 -> t) of the
    other points matched to its target bone. ``weights`` (n, B) skin weights, ``q`` (T, n, 3) matches."""
    core = (weights > 0.3) & (c[:, None] > 0)
    owner = torch.where(core.any(1), (weights * core).argmax(1), -1)  # dominant bone per vertex
    robust = torch.ones_like(c)
    for _ in range(rounds):
        bone_w = (core * (c * robust)[:, None]).T  # (B, n)
        cov, first_mean, mean = weighted_covariances(q[0], q, bone_w)
        rot = nearest_rotation(cov)  # (T, B, 3, 3): frame 0 -> t per bone
        ok = owner >= 0
        b = owner.clamp_min(0)
        predicted = (rot[:, b] @ (q[0] - first_mean[b])[None, :, :, None])[..., 0] + mean[:, b]
        residual = (predicted - q).norm(dim=-1).median(dim=0).values  # (n,)
        scale = 2.0 * residual[ok & (c > 0)].median().clamp_min(1e-4)
        robust = torch.where(ok, 1.0 / (1.0 + (residual / scale) ** 2), torch.ones_like(c))
    return robust


def _consistency_weights(model: TorchRig, ids, rotations, free, locations, q, c) -> torch.Tensor:
    """(n,) Cauchy weights of each sampled vertex's median residual over all frames."""
    verts = model.skin(model.skinning_matrices(model.bone_matrices(local_matrices(rotations, free, locations))), ids)
    residual = (verts - q).norm(dim=-1).median(dim=0).values  # (n,)
    scale = 2.0 * residual[c > 0].median().clamp_min(1e-6)
    return 1.0 / (1.0 + (residual / scale) ** 2)


def _charbonnier(r2: torch.Tensor, delta: float) -> torch.Tensor:
    return torch.sqrt(r2 + delta * delta) - delta


def _data_terms(verts, q, c, bone_w, centroid_weight, robust_scale, trim):
    """Robust per-vertex distance plus per-bone matched-centroid distance, trimmed per frame."""
    diff = verts - q
    r2 = (diff * diff).sum(-1)  # (T, n)
    keep = torch.ones_like(r2)
    if trim > 0:
        with torch.no_grad():
            cut = torch.quantile(r2, 1.0 - trim, dim=1, keepdim=True)
            keep = (r2 <= cut).to(r2.dtype)
    wv = c[None] * keep
    vertex = (wv * _charbonnier(r2, robust_scale)).sum() / wv.sum().clamp_min(1e-12)
    if centroid_weight <= 0:
        return vertex
    kept_diff = diff * keep[..., None]
    mass = keep @ bone_w  # (T, B)
    centroid_diff = apply_to_frames(bone_w.T, kept_diff) / mass.clamp_min(1e-12)[..., None]  # (T, B, 3)
    centroid = ((centroid_diff**2).sum(-1) * mass).sum() / mass.sum().clamp_min(1e-12)
    return vertex + centroid_weight * centroid / (2 * robust_scale)  # matches Charbonnier's quadratic regime


def _edge_term(verts, edge_rows, rest_len):
    if len(edge_rows) == 0:
        return verts.new_zeros(())
    e = verts[:, edge_rows[:, 0]] - verts[:, edge_rows[:, 1]]
    return (((e.norm(dim=-1) - rest_len) ** 2).mean() / (rest_len**2).mean().clamp_min(1e-12))


def _smooth_terms(joints, rot, config):
    if joints.shape[0] < 3:
        return joints.new_zeros(())
    accel = joints[2:] - 2 * joints[1:-1] + joints[:-2]
    spin = rot[1:] - rot[:-1]
    return config.smooth_weight * (accel**2).sum(-1).mean() + config.rotation_smooth_weight * (spin**2).sum((-1, -2)).mean()


def _prior_terms(rot, config):
    eye = torch.eye(3, dtype=rot.dtype, device=rot.device)
    rest = ((rot - eye) ** 2).sum((-1, -2)).mean()
    twist = ((rot[..., 0, 2] - rot[..., 2, 0]) ** 2).mean()  # 2 sin(angle) * axis_y: spin about the bone
    return config.rest_prior_weight * rest + config.twist_prior_weight * twist


def _result(target, model, six, free, locations, scale, matched, conf, src_centre, tgt_centre, size) -> MotionResult:
    """Evaluate the fit on every vertex and convert to Blender's pose-bone terms (armature units)."""
    rot = matrix_from_6d(six)
    with torch.no_grad():
        joints, residuals = [], []
        placed = scale * (matched - src_centre) + tgt_centre
        valid = torch.as_tensor(conf > 0)
        for start in range(0, rot.shape[0], 32):  # frames in chunks: (T, N, B) products stay small
            chunk = slice(start, start + 32)
            verts, heads = model.pose(local_matrices(rot[chunk], free, locations[chunk]))
            q = torch.as_tensor(placed[chunk], dtype=verts.dtype, device=verts.device)
            residuals.append((verts - q).norm(dim=-1)[:, valid.to(verts.device)].mean(1).cpu())
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
        placed_source=placed * size,
    )
