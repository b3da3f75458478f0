"""Feet on the floor: the source's ground contacts, the fit's contact and floor terms, and the measures of a
clip's contact quality (foot sliding, floor penetration and float, rotation jumps).

No bone map and no foot labels: a *contact* is a source vertex that is near the floor (within a band of
the lowest it gets in the clip, which is itself near the clip's floor) and nearly still across the floor
in that frame. A target vertex is in contact when its match is, and it is low on the target at rest (a
hand matched to a foot by mistake is not pinned). In the fit, a target vertex in contact keeps the height
above the target's own floor it has at rest (the foot flat, as it stands) and does not move across the
floor while the contact lasts; no vertex may go below the floor.

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
    contact), ``steps`` (T-1, c, 3) their matches' steps across the floor (a planted vertex moves as its match
    does: not at all, or with the treadmill of an in-place walk); ``lowest`` (T,) the source's lowest
    height above its floor per frame (a jump lifts the target too), ``base`` the lowest rest height above
    the floor of the posed vertices (the sample may hold no sole vertex), ``floor`` the target's floor
    height and ``up`` (3,)."""

    columns: torch.Tensor
    mask: torch.Tensor
    goal: torch.Tensor
    steps: torch.Tensor
    lowest: torch.Tensor
    base: float
    floor: float
    up: torch.Tensor

    @classmethod
    def build(cls, placed_matches: np.ndarray, rest: np.ndarray, up, floor: float, height: float,
              lift: np.ndarray, device) -> "ContactGoals":
        """From the placed matched source points (T, n, 3) of the n loss vertices (the source's floor already
        on the target's) and the rest places (n', 3) of the posed vertices, the loss vertices first, in the
        fitter's units and the target's armature space; ``floor`` and ``height`` are the whole target's at
        rest (the loss vertices may miss its lowest); ``lift`` (T,) how far the whole source's lowest point
        is above its floor per frame, placed (from all its vertices: the matches of a target's feet may sit
        above the source's, e.g. a cow's short hooves matched up a horse's leg, and must not lift it)."""
        up = np.asarray(up, dtype=np.float64) / np.linalg.norm(up)
        rest_h, base = heights(rest[: placed_matches.shape[1]], up), float(heights(rest, up).min() - floor)
        mask = source_contacts(placed_matches, up, height) & (rest_h - floor < TARGET_LOW * height)[None]
        columns = np.flatnonzero(mask.any(axis=0))  # the few feet vertices: the terms below touch only these
        steps = np.diff(_across(placed_matches[:, columns], up), axis=0)
        lowest = np.maximum(np.asarray(lift, dtype=np.float64), 0.0)
        as_t = lambda a, dtype=torch.float32: torch.as_tensor(np.asarray(a), dtype=dtype, device=device)  # noqa: E731
        return cls(as_t(columns, torch.long), as_t(mask[:, columns]), as_t(rest_h[columns] - floor), as_t(steps),
                   as_t(lowest), base, floor, as_t(up))

    def loss(self, verts: torch.Tensor, scale: float) -> torch.Tensor:
        """Floor terms, quadratic and divided by ``scale`` like the data term's knee: no vertex below the
        floor (summed over vertices: a foot of a few vertices counts), each frame's lowest point as high as
        the source's, contacts at their rest height and moving as their matches do. ``verts`` (T, n', 3)
        posed, the n loss vertices first."""
        h = verts @ self.up - self.floor  # (T, n')
        below = torch.relu(-h)
        low = h.min(dim=1).values - self.base
        loss = 10.0 * (below * below).sum(1).mean() + ((low - self.lowest) ** 2).mean()
        if len(self.columns) == 0:
            return loss / (2 * scale)
        lift = (h[:, self.columns] - self.goal) * self.mask
        loss = loss + (lift * lift).sum() / self.mask.sum()
        if verts.shape[0] > 1:
            both = self.mask[1:] * self.mask[:-1]
            feet = verts[:, self.columns]
            step = feet[1:] - feet[:-1]
            slip = step - (step @ self.up)[..., None] * self.up - self.steps
            loss = loss + ((slip * slip).sum(-1) * both).sum() / both.sum().clamp_min(1.0)
        return loss / (2 * scale)


def floor_report(vertices: np.ndarray, up, floor: float, height: float) -> dict:
    """Per clip (T, N, 3): penetration below and float above ``floor`` of each frame's lowest point, as
    fractions of ``height`` (max and mean over frames), and foot sliding (:func:`foot_sliding`)."""
    low = heights(vertices, up).min(axis=1) - floor
    below, above = np.maximum(-low, 0) / height, np.maximum(low, 0) / height
    return {"penetration_max": float(below.max()), "penetration_mean": float(below.mean()),
            "float_max": float(above.max()), "float_mean": float(above.mean()),
            "sliding": foot_sliding(vertices, height, up)}


def foot_sliding(vertices: np.ndarray, height: float, up=(0.0, 0.0, 1.0), contact: float = 0.02) -> float:
    """Mean speed across the floor (per frame, / height) of vertices within ``contact`` * height of the
    clip's floor (:func:`clip_floor`) in consecutive frames: how much feet skate while planted."""
    up = np.asarray(up, dtype=np.float64) / np.linalg.norm(up)
    h = heights(vertices, up)
    low = (h - np.median(h.min(axis=1))) < contact * height  # (T, N)
    planted = low[1:] & low[:-1]
    step = np.diff(vertices, axis=0)
    step = step - (step @ up)[..., None] * up
    speed = np.linalg.norm(step, axis=-1) / height
    return float(speed[planted].mean()) if planted.any() else 0.0


def rotation_jumps(rotations: np.ndarray) -> np.ndarray:
    """(T-1, B) angle in degrees between consecutive local quaternions (w, x, y, z)."""
    dots = np.abs((rotations[1:] * rotations[:-1]).sum(-1)).clip(0, 1)
    return np.degrees(2 * np.arccos(dots))
