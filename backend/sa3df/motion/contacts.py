"""Feet on the floor: the source's ground contacts, the fit's contact and floor terms, and the measures of a
clip's contact quality (foot sliding, floor penetration and float, rotation jumps).

No bone map and no foot labels: a *contact* is a source vertex that is near the floor (within a band of
the lowest it gets in the clip, which is itself near the clip's floor) and nearly still across the floor
in that frame. A target vertex is in contact when its match is, and it is low on the target at rest (a
hand matched to a foot by mistake is not pinned). In the fit, a target vertex in contact keeps the height
above the target's own floor it has at rest (the foot flat, as it stands) and moves across the floor with
the ground (the frame's median step of the contacts: not at all, or with the treadmill of an in-place walk)
while the contact lasts, not with its own match's roll or skid; no vertex may go below the floor, and a
leg's vertex is kept above it by its leg's chain alone (:func:`leg_bones`). Tilting the hips and spine to
lift a toe, and copying each match's skid, cost the man -> woman walk 0.07 % of the height in joint error
against the ground truth (0.90 % instead of 0.83 %; now 0.83 %, as without the floor terms). While no
vertex of its foot (its bone) is in contact, a contact vertex rises above its rest height at least as far
as its match rises above the match's own lowest: a swinging foot clears the floor as the source's does.
Without that, the robot's box feet skimmed the floor at 0.4 % of its height while their matches were 1.1 %
up, at 4-13 % of the height a frame, and slid 4.75 % a frame against the man's 3.97 (now 3.89).

Heights are along the armature-space ``up`` axis; lengths in the fitter's units (target size).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

# Fractions of the character's height (along up) and per-frame speeds in height per frame.
NEAR_FLOOR = 0.06  # a vertex whose lowest point in the clip is this close to the floor can touch it
LIFT = 0.012  # ... and touches it while within this of its lowest point
STILL = 0.006  # ... and moves less than this across the floor per frame
TARGET_LOW = 0.08  # a target vertex can be pinned only when this low at rest
SWING_WEIGHT = 0.5  # the swing clearance's share of the floor terms (bench_motion: 1.0 skims the wolf's paws
# along the floor with the fox's, 0.3 leaves the robot's box feet skimming it)


def heights(points: np.ndarray, up) -> np.ndarray:
    """(...) heights of points (..., 3) along ``up`` (normalised here)."""
    up = np.asarray(up, dtype=np.float64)
    return np.asarray(points) @ (up / np.linalg.norm(up))


def clip_floor(points: np.ndarray, up) -> float:
    """The floor of a clip (T, N, 3): the median over frames of the lowest point (a jump cannot move it)."""
    return float(np.median(heights(points, up).min(axis=1)))


def _across(points: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Points (..., 3) with their component along the unit ``up`` removed (their place on the floor)."""
    return points - (points @ up)[..., None] * up


def source_contacts(frames: np.ndarray, up, height: float) -> np.ndarray:
    """(T, N) bool: which vertices of a clip (T, N, 3) touch the floor in which frame (module docstring).

    "Still" is relative to the ground: a walk recorded in place moves its planted feet backwards at the
    walking speed, so a low vertex is in contact when it moves with the other low vertices of its frame
    (their median step), not when it stands still in the armature's space."""
    up = np.asarray(up, dtype=np.float64) / np.linalg.norm(up)
    h = heights(frames, up)
    lowest = h.min(axis=0)
    floor = np.median(h.min(axis=1))
    low = ((lowest - floor) < NEAR_FLOOR * height)[None] & (h - lowest[None] < LIFT * height)  # (T, N)
    if len(frames) < 2:
        return low
    step = np.diff(_across(frames, up), axis=0)  # (T-1, N, 3)
    both = low[1:] & low[:-1]
    ground = np.array([np.median(s[b], axis=0) if b.any() else np.zeros(3) for s, b in zip(step, both)])
    slip = np.linalg.norm(step - ground[:, None], axis=-1)  # (T-1, N)
    slip = np.minimum(np.vstack([slip[:1], slip]), np.vstack([slip, slip[-1:]]))  # either neighbour
    return low & (slip < STILL * height)


@dataclass
class ContactGoals:
    """What the fit keeps, for the loss vertices ever in contact (``columns`` (c,) of the n loss vertices):
    ``mask`` (T, c) their contacts (0/1), ``goal`` (c,) their rest heights above the floor (kept while in
    contact), ``steps`` (T-1, c, 3) the ground's step across the floor per frame (the median step of the
    contacts' matches, for each column); ``lowest`` (T,) the source's lowest height above its floor per
    frame (a jump lifts the target too), ``clearance`` (T, c) how far above its rest height a column stays
    while its foot swings (:func:`swing_clearance`), ``base`` the lowest rest height above the floor of the
    posed vertices (the sample may hold no sole vertex), ``floor`` the target's floor height and ``up`` (3,);
    ``leg_list`` the bones of the contacts' chains (:func:`leg_bones`) and ``leg_rows`` the posed vertices
    (rows) low at rest that mainly follow them, which the fit poses a second time with only those bones
    free for the penetration term."""

    columns: torch.Tensor
    mask: torch.Tensor
    goal: torch.Tensor
    steps: torch.Tensor
    lowest: torch.Tensor
    clearance: torch.Tensor
    base: float
    floor: float
    up: torch.Tensor
    leg_list: list
    leg_rows: torch.Tensor

    @classmethod
    def build(cls, placed_matches: np.ndarray, rest: np.ndarray, up, floor: float, height: float,
              lift: np.ndarray, rig, weights: np.ndarray, device) -> "ContactGoals":
        """From the placed matched source points (T, n, 3) of the n loss vertices (the source's floor already
        on the target's) and the rest places (n', 3) of the posed vertices, the loss vertices first, in the
        fitter's units and the target's armature space; ``floor`` and ``height`` are the whole target's at
        rest (the loss vertices may miss its lowest); ``lift`` (T,) how far the whole source's lowest point
        is above its floor per frame, placed (from all its vertices: the matches of a target's feet may sit
        above the source's, e.g. a cow's short hooves matched up a horse's leg, and must not lift it);
        ``rig`` the target and ``weights`` (n', B) the posed vertices' skin weights."""
        up = np.asarray(up, dtype=np.float64) / np.linalg.norm(up)
        rest_h, base = heights(rest[: placed_matches.shape[1]], up), float(heights(rest, up).min() - floor)
        mask = source_contacts(placed_matches, up, height) & (rest_h - floor < TARGET_LOW * height)[None]
        columns = np.flatnonzero(mask.any(axis=0))  # the few feet vertices: the terms below touch only these
        steps = _ground_steps(placed_matches[:, columns], mask[:, columns], up)
        clearance = swing_clearance(heights(placed_matches[:, columns], up), mask[:, columns],
                                     weights[columns].argmax(1), weights.shape[1])
        lowest = np.maximum(np.asarray(lift, dtype=np.float64), 0.0)
        legs = leg_bones(rig, (weights[columns] > 0.3).sum(0))
        low = heights(rest, up) - floor < TARGET_LOW * height  # what can go below the floor
        leg_rows = np.flatnonzero(legs[weights.argmax(1)] & (weights.sum(1) > 0) & low)
        as_t = lambda a, dtype=torch.float32: torch.as_tensor(np.asarray(a), dtype=dtype, device=device)  # noqa: E731
        return cls(as_t(columns, torch.long), as_t(mask[:, columns]), as_t(rest_h[columns] - floor), as_t(steps),
                   as_t(lowest), as_t(clearance), base, floor, as_t(up), np.flatnonzero(legs).tolist(),
                   as_t(leg_rows, torch.long))

    def loss(self, heights: torch.Tensor, feet: torch.Tensor, scale: float,
             leg_heights: torch.Tensor | None = None) -> torch.Tensor:
        """Floor terms, quadratic and divided by ``scale`` like the data term's knee: no vertex below the
        floor (summed over vertices: a foot of a few vertices counts), each frame's lowest point as high as
        the source's, contacts at their rest height and moving with the ground, swinging feet as high as
        their matches. ``heights`` (T, n') of the posed vertices along up, the n loss vertices first;
        ``feet`` (T, len(columns), 3) the contact columns posed; ``leg_heights`` (T, len(leg_rows)) the leg
        rows' heights posed with only the legs' bones free (their penetration then moves only the legs)."""
        h = heights - self.floor  # (T, n')
        below = torch.relu(-h)
        if leg_heights is not None:
            below = below.index_copy(1, self.leg_rows, torch.relu(self.floor - leg_heights))
        low = h.min(dim=1).values - self.base
        loss = 10.0 * (below * below).sum(1).mean() + ((low - self.lowest) ** 2).mean()
        if len(self.columns) == 0:
            return loss / (2 * scale)
        feet_h = h.index_select(1, self.columns)  # index_select: a cheaper gradient than h[:, columns]
        lift = (feet_h - self.goal) * self.mask
        loss = loss + (lift * lift).sum() / self.mask.sum()
        short = torch.relu(self.clearance - (feet_h - self.goal))  # a swinging foot skims the floor
        loss = loss + SWING_WEIGHT * (short * short).sum() / (1 - self.mask).sum().clamp_min(1.0)
        if feet.shape[0] > 1:
            both = self.mask[1:] * self.mask[:-1]
            step = feet[1:] - feet[:-1]
            slip = step - _along(step, self.up)[..., None] * self.up - self.steps
            loss = loss + ((slip * slip).sum(-1) * both).sum() / both.sum().clamp_min(1.0)
        return loss / (2 * scale)


def _along(points: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """(...) components of ``points`` (..., 3) along ``up`` (3,). An einsum, not ``@``: torch's batched
    matmul with an inner size of 3 took 10 of the floor terms' 15 ms a step (250 frames x 1,575 vertices)."""
    return torch.einsum("...k,k->...", points, up)


def swing_clearance(match_heights: np.ndarray, mask: np.ndarray, bones: np.ndarray, n_bones: int) -> np.ndarray:
    """(T, c) how far each contact column must stay above its rest height while its foot swings: its match's
    height (``match_heights`` (T, c)) above the match's lowest in the clip, in the frames where no column of
    its bone (``bones`` (c,), the dominant one) is in contact (``mask`` (T, c)); 0 while the foot stands (a
    heel rolling off a planted toe is not lifted)."""
    standing = np.stack([np.bincount(bones[m], minlength=n_bones) > 0 for m in mask])  # (T, B)
    return (match_heights - match_heights.min(axis=0)) * ~standing[:, bones]


def _ground_steps(placed: np.ndarray, mask: np.ndarray, up: np.ndarray) -> np.ndarray:
    """(T-1, c, 3) per frame, the median step across the floor of the matches (T, c, 3) in contact in both
    frames (``mask`` (T, c)), for every column: where the ground goes (nowhere, or backwards under an
    in-place walk). Their own steps also hold each source vertex's roll and skid, which the target's
    planted foot need not copy."""
    steps = np.diff(_across(placed, up), axis=0)
    both = mask[1:] & mask[:-1]
    ground = np.array([np.median(s[b], axis=0) if b.any() else np.zeros(3) for s, b in zip(steps, both)])
    return np.broadcast_to(ground.reshape(-1, 1, 3), steps.shape).copy()


def leg_bones(rig, contact_skin: np.ndarray, branch_share: float = 0.05) -> np.ndarray:
    """(B,) bool: the bones of the chains that carry the contacts: each bone carrying contact skin
    (``contact_skin`` (B,) > 0) and its ancestors up to, not including, the first that also carries another
    branch of more than ``branch_share`` of the skin (the hips above the legs, the body above an IK foot)."""
    parents = np.asarray(rig.parents)
    below = np.asarray(contact_skin) > 0  # the bone or a descendant carries contact skin
    for b in range(rig.n_bones - 1, -1, -1):  # parents are listed first: children before them here
        if parents[b] >= 0:
            below[parents[b]] |= below[b]
    subtree = rig.subtree_weight() / max(rig.weights.sum(), 1e-12)
    other = np.zeros(rig.n_bones)  # skin share of the child branches without contact skin
    for b in range(rig.n_bones):
        if parents[b] >= 0 and not below[b]:
            other[parents[b]] += subtree[b]
    branching = other > branch_share
    for b in range(rig.n_bones - 1, -1, -1):  # above a branching bone, every ancestor carries that branch
        if parents[b] >= 0:
            branching[parents[b]] |= branching[b]
    return below & ~branching


def floor_report(vertices: np.ndarray, up, floor: float, height: float) -> dict:
    """Per clip (T, N, 3): penetration below and float above ``floor`` of each frame's lowest point, as
    fractions of ``height`` (max and mean over frames), and foot sliding (:func:`foot_sliding`), also
    against the ground ("ground_sliding")."""
    low = heights(vertices, up).min(axis=1) - floor
    below, above = np.maximum(-low, 0) / height, np.maximum(low, 0) / height
    return {"penetration_max": float(below.max()), "penetration_mean": float(below.mean()),
            "float_max": float(above.max()), "float_mean": float(above.mean()),
            "sliding": foot_sliding(vertices, height, up),
            "ground_sliding": foot_sliding(vertices, height, up, against_ground=True)}


def foot_sliding(vertices: np.ndarray, height: float, up=(0.0, 0.0, 1.0), contact: float = 0.02,
                 against_ground: bool = False) -> float:
    """Mean speed across the floor (per frame, / height) of vertices within ``contact`` * height of the
    clip's floor (:func:`clip_floor`) in consecutive frames: how much feet skate while planted.
    ``against_ground``: speeds relative to the ground's, the median step of those vertices over the clip (a
    walk recorded in place moves its planted feet at a treadmill's speed, which is not skating)."""
    up = np.asarray(up, dtype=np.float64) / np.linalg.norm(up)
    h = heights(vertices, up)
    low = (h - np.median(h.min(axis=1))) < contact * height  # (T, N)
    planted = low[1:] & low[:-1]
    step = np.diff(vertices, axis=0)
    step = step - (step @ up)[..., None] * up
    if against_ground and planted.any():
        step = step - np.median(step[planted], axis=0)
    speed = np.linalg.norm(step, axis=-1) / height
    return float(speed[planted].mean()) if planted.any() else 0.0


def rotation_jumps(rotations: np.ndarray) -> np.ndarray:
    """(T-1, B) angle in degrees between consecutive local quaternions (w, x, y, z)."""
    dots = np.abs((rotations[1:] * rotations[:-1]).sum(-1)).clip(0, 1)
    return np.degrees(2 * np.arccos(dots))
