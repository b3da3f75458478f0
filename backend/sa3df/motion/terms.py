"""The pieces of the pose fit (see :mod:`sa3df.motion.fit`): sampling, the closed-form start, match
re-weighting and space-time re-matching, the loss terms, and the batched Adam refinement.

Lengths here are in units of the target's size (the rest skin's bounding-box diagonal).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from sa3df.core.progress import ProgressFn, report
from sa3df.motion.rig import Rig
from sa3df.motion.skinning import TorchRig, apply_to_frames, local_matrices
from sa3df.motion.rotations import matrix_from_6d, nearest_rotation, six_from_matrix, weighted_covariances

STILL_PRIOR = 0.05  # spin_limits: pull of a bone's measured turn towards none (fraction of its covariance)
# spin_limits: ... and a pull of at least this spread (fraction of the size) squared: the turn of matches
# bunched closer than it is noise (the cow's tail, matched to one or two of the horse's points: its tip was
# allowed 180 deg a frame and took a 31.5 deg jump; a limb's matches spread about 0.07)
STILL_SPREAD = 0.005
# spin_limits: that pull and skin blended with the neighbours' make a measured turn 5-20 % smaller than the
# skin's (the tests' tube: 23.1 deg for 28.4); the limit is the measure times this (1.25 let the wolf's
# leg turn 21.9 deg where the fox's own largest turn is 19.4, and 1.15 21.0 once the fox's walk is scaled
# by height: bench_motion; 1.10 keeps it at 18.1 and changes no other pair's largest turn by over 0.4).
TURN_MARGIN = 1.10


def refine(model: TorchRig, problem: "Problem", c, rotations, locations, scale, free, src_c, tgt_c, config,
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
    # Optionally, bones too poorly observed to fit on their own (see supported_bones) keep following their
    # parent through the refinement too, not only in the start: a few wrong matches cannot twist a finger,
    # but neither can a few right ones (off by default: the fox's ears and tail tips must move).
    frozen = None
    if config.follow_parent:
        frozen = ~supported_bones(model, problem.sample, problem.c, config)
        frozen &= torch.as_tensor([p >= 0 for p in model.rig.parents], device=frozen.device)
        frozen = frozen[None, :, None, None]
        eye = torch.eye(3, device=c.device)
    attached = attachments(model.rig, free, config.attach_distance)
    # Each term poses its own rows (Skinner's note): the sample, the edges' vectors, the floor terms' rows.
    skin_data = model.skinner(ids[:n_data])
    skin_edges = model.skinner(ids[edge_rows[:, 0]], minus=ids[edge_rows[:, 1]])
    contacts = problem.contacts
    if contacts is not None:
        skin_all, skin_feet = model.skinner(ids), model.skinner(ids[contacts.columns])
        skin_legs = model.skinner(ids[contacts.leg_rows]) if len(contacts.leg_rows) else None
    centred = q_raw - src_c  # the matches about the source's centre, scaled each step
    with torch.no_grad():
        limit = spin_limits(model, problem, c, q_raw * scale, config)
    for it in range(iterations):
        rot = matrix_from_6d(six)
        if frozen is not None:
            rot = torch.where(frozen, eye, rot)
        q = log_scale.exp() * centred + tgt_c
        local = local_matrices(rot, free, locations)
        posed = model.bone_matrices(local)
        skinning = model.skinning_matrices(posed)
        verts, joints = skin_data(skinning), posed[..., :3, 3]
        trim = config.trim_fraction if it >= iterations // 3 else 0.0
        # The centroid term steers while matches are far off; it fades out by mid-run because, being an
        # average, it pins each bone's centre and slows the last (twist) refinements.
        centroid = config.centroid_weight * max(0.0, 1.0 - 2.0 * it / max(iterations, 1))
        loss = _data_terms(verts, q, c, bone_w, centroid, config.robust_scale, trim)
        loss = loss + config.edge_weight * _edge_term(skin_edges(skinning), rest_len)
        loss = loss + _smooth_terms(joints, rot, limit, config) + _prior_terms(rot, config)
        if contacts is not None:
            legs = None if skin_legs is None else _legs_only(model, contacts, posed, local, skin_legs)
            loss = loss + config.contact_weight * contacts.loss(skin_all.heights(skinning, contacts.up),
                                                                skin_feet(skinning), config.robust_scale, legs)
        if len(attached):
            gap = joints[:, attached[:, 0]] - joints[:, attached[:, 1]]
            loss = loss + config.attach_weight * (gap * gap).sum(-1).mean() / (2 * config.robust_scale)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if it % 10 == 0:
            report(progress, it / iterations, f"fitting ({it}/{iterations})")
    rot = matrix_from_6d(six.detach())
    if frozen is not None:
        rot = torch.where(frozen, eye, rot)
    return rot, locations.detach(), float(log_scale.detach().exp())


def _legs_only(model: TorchRig, contacts, posed, local, skin_legs):
    """(T, r) heights of the contacts' leg rows posed (by ``skin_legs``, their skinner) with every bone but
    the legs' held (no gradient): what the penetration term may move. ``posed`` (T, B, 4, 4) the bone
    frames of the ``local`` matrices."""
    held = model.with_only(posed, local, contacts.leg_list)
    return skin_legs.heights(model.skinning_matrices(held), contacts.up)


@dataclass
class Problem:
    """The sampled data of one fit: posed vertex ids (loss sample first), edges, matches and confidences."""

    sample: np.ndarray
    ids: torch.Tensor
    n_data: int
    edge_rows: torch.Tensor
    q_raw: torch.Tensor  # (T, n, 3) matched source points of the sample, size units, not yet placed
    c: torch.Tensor  # (n,) confidences
    contacts: object = None  # sa3df.motion.contacts.ContactGoals of the loss vertices, when feet are kept down

    @classmethod
    def build(cls, target: Rig, model: TorchRig, matched, conf, config, gen, also_pose=()) -> "Problem":
        """``also_pose``: vertices posed (for the floor terms) even when neither sampled nor on an edge."""
        device = model.device
        sample, edges = sample_problem(target, conf, config, gen)
        extra = np.setdiff1d(np.union1d(np.unique(edges), np.asarray(also_pose, dtype=np.int64)), sample)
        order = np.concatenate([sample, extra])
        row_of = np.full(target.n_vertices, -1, dtype=np.int64)
        row_of[order] = np.arange(len(order))
        as_t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32, device=device)  # noqa: E731
        return cls(sample, torch.as_tensor(order, device=device), len(sample),
                   torch.as_tensor(row_of[edges], device=device).reshape(-1, 2), as_t(matched[:, sample]),
                   as_t(conf[sample]))


def robust_start(model, target, problem: Problem, scale, src_c, tgt_c, free, config):
    """Closed-form start with consistency re-weighting of the matches; returns (rotations, locations, c)."""
    q0 = scale * (problem.q_raw - src_c) + tgt_c
    c = problem.c
    data_ids = problem.ids[: problem.n_data]
    rotations, locations = closed_form_start(model, target, problem.sample, q0, c, free, config)
    for _ in range(config.reweight_rounds):
        c = c * _consistency_weights(model, data_ids, rotations, free, locations, q0, c)
        rotations, locations = closed_form_start(model, target, problem.sample, q0, c, free, config)
    return rotations, locations, c


def rematch(model, rotations, free, locations, frames, scale, src_centre, tgt_centre, matches, conf, config):
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


def sample_problem(target: Rig, conf, config, gen):
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


def closed_form_start(model: TorchRig, target: Rig, sample, q, c, free, config):
    """Initial local rotations (T, B, 3, 3) and translating-bone locations (T, F, 3) from per-bone
    weighted Kabsch fits of skinned rest vertices onto their matches."""
    t, b = q.shape[0], target.n_bones
    ids = torch.as_tensor(sample)
    w, rest = model.weights[ids], model.rest_vertices[ids]  # (n, B), (n, 3)
    core = (w > 0.3) & (c[:, None] > 0)
    supported = supported_bones(model, sample, c, config).tolist()
    bone_w = (w * w * c[:, None] * core).T  # (B, n)
    cov, rest_mean, match_mean = weighted_covariances(rest, q, bone_w)
    cov = _smooth_in_time(cov, config.start_time_window)
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


def attachments(rig: Rig, free, distance: float) -> np.ndarray:
    """(K, 2) pairs (translating bone, bone) whose rest heads coincide (within ``distance`` x size), the
    second neither an ancestor nor a descendant of the first: an IK foot or hand control sitting at the end
    of its limb chain. The fit keeps them together, as the rig's IK constraint would."""
    heads = rig.rest_matrices[:, :3, 3]
    pairs = []
    for k in free:
        if rig.parents[k] < 0 and k == rig.root:
            continue
        related = {k}
        for b in range(rig.n_bones):  # ancestors and descendants (parents are listed first)
            a = b
            while a >= 0 and a != k:
                a = rig.parents[a]
            if a == k:
                related.add(b)
        a = rig.parents[k]
        while a >= 0:
            related.add(a)
            a = rig.parents[a]
        gaps = np.linalg.norm(heads - heads[k], axis=1) / rig.size
        gaps[list(related)] = np.inf
        if gaps.min() <= distance:
            pairs.append((k, int(np.argmin(gaps))))
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def supported_bones(model: TorchRig, sample, c, config) -> torch.Tensor:
    """(B,) bool: bones with enough matched skinned vertices (weight > 0.3) in the loss sample to be fitted
    on their own; the others follow their parent (stay at rest relative to it)."""
    core = (model.weights[torch.as_tensor(sample)] > 0.3) & (c[:, None] > 0)
    needed = max(config.min_bone_vertices, config.min_bone_share * len(sample))
    return core.sum(0) >= needed


def _smooth_in_time(values: torch.Tensor, window: int) -> torch.Tensor:
    """Binomial moving average over the frame axis (0) of (T, ...) values, ``window`` frames wide (odd).

    Applied to per-frame covariances it lets neighbouring frames vote: a frame whose matches leave a
    bone's rotation ambiguous takes its neighbours' answer instead of flipping."""
    t = values.shape[0]
    if window < 3 or t < 3:
        return values
    half = min(window // 2, (t - 1) // 2)
    kernel = torch.tensor([float(math.comb(2 * half, k)) for k in range(2 * half + 1)], dtype=values.dtype)
    kernel = (kernel / kernel.sum()).to(values.device)
    flat = values.reshape(t, -1).T[:, None, :]  # (features, 1, T)
    padded = torch.nn.functional.pad(flat, (half, half), mode="replicate")
    smoothed = torch.nn.functional.conv1d(padded, kernel.view(1, 1, -1))
    return smoothed[:, 0, :].T.reshape(values.shape)


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
            k = int(round((r2.shape[1] - 1) * (1.0 - trim))) + 1  # kthvalue selects; quantile would sort
            cut = torch.kthvalue(r2, k, dim=1, keepdim=True).values
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


def _edge_term(edges, rest_len):
    """Edge length change of the posed edge vectors ``edges`` (T, E, 3) against their rest lengths (E,)."""
    if edges.shape[1] == 0:
        return edges.new_zeros(())
    return (((edges.norm(dim=-1) - rest_len) ** 2).mean() / (rest_len**2).mean().clamp_min(1e-12))


def spin_limits(model: TorchRig, problem: "Problem", c, q, config) -> torch.Tensor:
    """(T-1, B) the largest per-frame change of each bone's local rotation the fit allows without cost, in
    the units of ``_smooth_terms``' spin (4 (1 - cos angle)): ``config.flip_angle``, or more where the
    source itself turns faster, measured without a bone map as the rotation (Kabsch) between consecutive
    frames of the matched source points ``q`` (T, n, 3) of the bone's skin plus its parent's."""
    t, b = q.shape[0], model.rig.n_bones
    if t < 2:
        return q.new_zeros(0, b)
    w = (model.weights[problem.ids[: problem.n_data]] > 0.3).to(q.dtype) * c[:, None]  # (n, B)
    mass = w.sum(0).clamp_min(1e-12)
    mean = apply_to_frames(w.T, q) / mass[None, :, None]  # (T, B, 3)
    outer = (q[1:, :, :, None] * q[:-1, :, None, :]).reshape(t - 1, -1, 9)  # (T-1, n, 9)
    cov = apply_to_frames(w.T, outer).reshape(t - 1, b, 3, 3) / mass[None, :, None, None]
    cov = cov - mean[1:, :, :, None] * mean[:-1, :, None, :]
    # Matches that lie near a line (a cow's 6-vertex hoof matched to two of the horse's points, a thin limb)
    # fit any turn about it: a small pull towards no turn (STILL_PRIOR of the largest singular value) keeps
    # only the turn they show.
    eye = torch.eye(3, device=q.device)
    still = STILL_PRIOR * torch.linalg.matrix_norm(cov, ord=2) + STILL_SPREAD**2
    turn = nearest_rotation(cov + still[..., None, None] * eye)
    eye = eye.expand_as(turn)
    turn = torch.where((w.sum(0) > 0)[None, :, None, None], turn, eye)  # no skin: no measured turn
    # A local rotation is the parent's inverse times the bone's own (L = P^T G), so from frame to frame it
    # turns by the parent's step undone, then the bone's: P_step^T G_step, in the bone's previous frame.
    # (The sum of the two angles, an upper bound, let the robot's rigid foot turn 30 deg where the man's
    # own foot turns 24 deg.)
    parents = [max(p, 0) for p in model.rig.parents]
    roots = torch.as_tensor(model.rig.parents < 0, device=q.device)[None, :, None, None]
    local = torch.where(roots, turn, turn[:, parents].transpose(-1, -2) @ turn)
    cosine = ((local.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1.0, 1.0)  # (T-1, B)
    allowed = (TURN_MARGIN * torch.arccos(cosine)).clamp(min=math.radians(config.flip_angle), max=math.pi)
    return 4.0 * (1.0 - torch.cos(allowed))


def _smooth_terms(joints, rot, limit, config):
    if joints.shape[0] < 3:
        return joints.new_zeros(())
    accel = joints[2:] - 2 * joints[1:-1] + joints[:-2]
    spin = ((rot[1:] - rot[:-1]) ** 2).sum((-1, -2))  # (T-1, B) = 4 (1 - cos angle)
    # A hinge per bone and frame: no cost up to the limit, then a cost that grows with the excess, summed
    # over frames (a single jump must cost as much in a long clip as in a short one).
    flip = torch.relu(spin - limit).sum(0).mean()
    smooth = (accel**2).sum(-1).mean()
    return (config.smooth_weight * smooth + config.rotation_smooth_weight * spin.mean()
            + config.flip_weight * flip)


def _prior_terms(rot, config):
    eye = torch.eye(3, dtype=rot.dtype, device=rot.device)
    rest = ((rot - eye) ** 2).sum((-1, -2)).mean()
    twist = ((rot[..., 0, 2] - rot[..., 2, 0]) ** 2).mean()  # 2 sin(angle) * axis_y: spin about the bone
    return config.rest_prior_weight * rest + config.twist_prior_weight * twist
