"""Pairing two meshes' extremities (:class:`sa3df.apps.landmarks.MeshLandmarks`) one to one, and the turn
that makes the target face like the source: the second step of :func:`sa3df.apps.landmarks.landmark_prior`.

:func:`pair_landmarks` tries every assignment of the smaller set of extremities into the larger and
scores each by what a pose does not change (the distances between extremities along the surface and
their AGD), by the extremities' places once the target is turned (the turn fitted per assignment,
together with the way the feet point: :func:`_turns_with_feet`), and, given an up axis, by how well
their order of heights agrees (:func:`height_discord`). Where exchanging two extremities' mates barely
changes that score (left and right feet in a stride), their roots decide (:func:`side_checked`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from sa3df.apps.landmarks import MeshLandmarks, graph_distances, shortest_path


def _rotations_about(axis: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """(P, 3, 3) rotations by ``angles`` about the unit ``axis`` (Rodrigues)."""
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    c, s = np.cos(angles)[:, None, None], np.sin(angles)[:, None, None]
    return np.eye(3) + s * k + (1 - c) * (k @ k)


def best_turns(fixed: np.ndarray, moving: np.ndarray, up: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """For each candidate ``moving`` (P, m, 3), the rotation (about ``up``; any proper rotation without
    it) that best carries it onto ``fixed`` (m, 3), and the mean distance left: (P, 3, 3), (P,)."""
    if up is None:
        u, _, vt = np.linalg.svd(np.einsum("pmi,mj->pij", moving, fixed))
        u[:, :, 2] *= np.sign(np.linalg.det(u @ vt))[:, None]  # never a reflection
        rotations = np.transpose(u @ vt, (0, 2, 1))
    else:
        a = np.cross(up, [1.0, 0, 0] if abs(up[0]) < 0.9 else [0, 1.0, 0])
        a /= np.linalg.norm(a)
        b = np.cross(up, a)
        mx, my, fx, fy = moving @ a, moving @ b, fixed @ a, fixed @ b
        rotations = _rotations_about(up, np.arctan2((mx * fy - my * fx).sum(1), (mx * fx + my * fy).sum(1)))
    left = np.linalg.norm(np.einsum("pij,pmj->pmi", rotations, moving) - fixed, axis=2).mean(axis=1)
    return rotations, left


@dataclass
class LandmarkPairing:
    """``pairs`` (M, 2) indices into the source's and the target's ``ids``; ``rotation`` (3, 3) turns the
    target to face like the source; ``residual`` the mean distance between paired extremities left
    after the turn (mean-AGD units); ``cost`` the pairing's score (lower is better)."""

    pairs: np.ndarray
    rotation: np.ndarray
    residual: float
    cost: float


TURNS = 72  # turns about up tried for every pairing besides the one that best fits its extremities


def _turns_with_feet(small: MeshLandmarks, large: MeshLandmarks, maps: np.ndarray, up: np.ndarray | None,
                     position_weight: float, facing_weight: float):
    """Per pairing ``maps`` (P, m): the turn of ``large`` onto ``small`` minimising ``position_weight`` ×
    the extremities' distance left − ``facing_weight`` × the feet's agreement, with that distance and that
    agreement: (P, 3, 3), (P,), (P,). The turn that best fits the extremities alone can face the feet
    backwards: the robot's hanging arms put its hands nearer the man's hips than his hands, the right
    pairing's best fit turned it round (feet agreement −0.79), and its head was paired with his hand.
    Without ``up`` only that best fit is taken (any rotation)."""
    fixed, moving = small.points[small.ids], large.points[large.ids][maps]
    feet_large, feet_small = large.facing(up), small.facing(up)
    rotations, residual = best_turns(fixed, moving, up)
    facing = np.einsum("pij,j->pi", rotations, feet_large) @ feet_small
    if up is None:
        return rotations, residual, facing
    turns = _rotations_about(up, np.linspace(0.0, 2 * np.pi, TURNS, endpoint=False))  # (A, 3, 3)
    left = np.linalg.norm(np.einsum("aij,pmj->apmi", turns, moving) - fixed, axis=3).mean(axis=2)  # (A, P)
    agree = np.einsum("aij,j->ai", turns, feet_large) @ feet_small  # (A,)
    score = position_weight * left - facing_weight * agree[:, None]
    best = np.argmin(score, axis=0)
    columns = np.arange(len(maps))
    better = score[best, columns] < position_weight * residual - facing_weight * facing
    rotations[better] = turns[best[better]]
    residual[better], facing[better] = left[best, columns][better], agree[best[better]]
    return rotations, residual, facing


def height_discord(small: MeshLandmarks, large: MeshLandmarks, maps: np.ndarray, up: np.ndarray) -> np.ndarray:
    """(P,) per pairing ``maps`` (P, m): over the pairs of extremities, the mean of how far their order
    along ``up`` is reversed between the meshes (the smaller of the two height gaps, in mesh heights;
    0 where the order holds). Why: the robot of boxes with its arms hanging, against the T-posed man, has
    its hands as near each other as to its head along the surface, and its hands nearer his hips than his
    hands in place; without the order its head was paired with his hand (cost 0.413, the right pairing
    0.621)."""
    def heights(marks):
        h = marks.mesh.vertices @ up
        return (h[marks.ids] - h.min()) / max(float(np.ptp(h)), 1e-12)

    upper = np.triu_indices(maps.shape[1], 1)
    hs, hl = heights(small), heights(large)[maps]
    gap_small, gap_large = hs[upper[0]] - hs[upper[1]], hl[:, upper[0]] - hl[:, upper[1]]
    reversed_ = (gap_small * gap_large) < 0
    return (reversed_ * np.minimum(np.abs(gap_small), np.abs(gap_large))).mean(axis=1)


# The pairing cannot tell two of its extremities apart when exchanging their mates costs less than this
# (cost units of pair_landmarks; bench_cross's characters: the right pairing scores 0.001-0.09 below the
# best wrong one, and for the man walking as the target the wrong one scored 0.002-0.005 below the right
# one); their roots then decide.
SIDE_DOUBT = 0.05
# Where an extremity's side is read: this fraction of the way from its tip to where its path to the body
# centre meets the other's (the hip or the shoulder: a stride or crossed arms move the tips, not the roots).
ROOT_FRACTION = 0.9
ROOT_SPREAD = 0.03  # roots closer than this (mean-AGD units) leave the order as the pairing chose it


def limb_roots(marks: MeshLandmarks, i: int, j: int, fraction: float = ROOT_FRACTION) -> np.ndarray | None:
    """(2, 3) the roots (in ``marks.points``) of extremities ``i`` and ``j`` (indices into ``marks.ids``):
    on each one's shortest path to the body centre, ``fraction`` of the way from its tip to the first
    vertex the other's path shares. None when the two paths never meet."""
    lengths, predecessors = graph_distances(marks.graph, marks.ids[[i, j]], predecessors=True)
    paths = [shortest_path(predecessors[k], int(marks.ids[e]), marks.centre) for k, e in enumerate((i, j))]
    shared = set(paths[0]) & set(paths[1])
    if not shared:
        return None
    roots = []
    for k, path in enumerate(paths):
        limb = path[:next(n for n, v in enumerate(path) if v in shared) + 1]  # tip ... junction
        along = lengths[k][limb]
        roots.append(marks.points[limb[int(np.argmin(np.abs(along - fraction * along[-1])))]])
    return np.stack(roots)


def side_checked(small: MeshLandmarks, large: MeshLandmarks, chosen: np.ndarray, rotation: np.ndarray,
                 up: np.ndarray | None, doubtful) -> np.ndarray:
    """``chosen`` (m,), the extremities of ``large`` paired with ``small``'s, with the mates of every two
    extremities x, y of ``small`` that ``doubtful(chosen, x, y)`` says the pairing cannot tell apart
    exchanged where their order disagrees: the mates' roots (:func:`limb_roots`), ``large`` turned by
    ``rotation``, must lie along the axis of x's and y's roots (horizontal, given ``up``; at least
    :data:`ROOT_SPREAD` long, or nothing is decided) in the same order. Why: the man walking, feet nearly
    in line, against the woman at rest: the pairing that crossed his feet (so his legs) scored 0.002
    better than the right one; his hips still tell his sides."""
    chosen = chosen.copy()
    flat = (lambda v: v - (v @ up) * up) if up is not None else (lambda v: v)
    for x, y in itertools.combinations(range(len(chosen)), 2):
        if not doubtful(chosen, x, y):
            continue
        ours, theirs = limb_roots(small, x, y), limb_roots(large, chosen[x], chosen[y])
        if ours is None or theirs is None or np.linalg.norm(axis := flat(ours[0] - ours[1])) < ROOT_SPREAD:
            continue
        if flat(rotation @ (theirs[0] - theirs[1])) @ axis < 0:
            chosen[[x, y]] = chosen[[y, x]]
    return chosen


def pair_landmarks(source: MeshLandmarks, target: MeshLandmarks, up: np.ndarray | None = None,
                   position_weight: float = 1.0, facing_weight: float = 1.0,
                   order_weight: float = 1.0) -> LandmarkPairing:
    """The one-to-one assignment of the smaller set of extremities into the larger that scores best:
    mean differences of the distances between extremities and of their AGD, plus ``position_weight``
    × the distance left after the turn, minus ``facing_weight`` × the agreement of the feet's directions
    after that turn (the turn best for the two together: :func:`_turns_with_feet`), plus, with ``up``,
    ``order_weight`` × :func:`height_discord`. Every assignment is tried (at most 7!/0! = 5,040); the
    best one's extremities that it cannot tell apart are then put in the order of their roots
    (:func:`side_checked`), and the turn is that assignment's."""
    flipped = len(source.ids) > len(target.ids)
    small, large = (target, source) if flipped else (source, target)
    m = len(small.ids)
    maps = np.asarray(list(itertools.permutations(range(len(large.ids)), m)), dtype=np.int64)  # (P, m)
    upper = np.triu_indices(m, 1)
    structure = np.abs(large.between[maps[:, upper[0]], maps[:, upper[1]]] - small.between[upper]).mean(axis=1)
    agd = np.abs(large.agd[maps] - small.agd).mean(axis=1)
    rotations, residual, facing = _turns_with_feet(small, large, maps, up, position_weight, facing_weight)
    cost = structure + agd + position_weight * residual - facing_weight * facing
    if up is not None:
        cost = cost + order_weight * height_discord(small, large, maps, up)
    best = int(np.argmin(cost))
    index = {tuple(row): k for k, row in enumerate(maps.tolist())}  # every assignment is among the maps

    def doubtful(chosen, x, y):
        exchanged = chosen.copy()
        exchanged[[x, y]] = chosen[[y, x]]
        return cost[index[tuple(exchanged.tolist())]] - cost[index[tuple(chosen.tolist())]] < SIDE_DOUBT

    best = index[tuple(side_checked(small, large, maps[best], rotations[best], up, doubtful).tolist())]
    pairs = np.stack([np.arange(m), maps[best]], axis=1)
    rotation = rotations[best].T if flipped else rotations[best]
    return LandmarkPairing(pairs[:, ::-1] if flipped else pairs, rotation, float(residual[best]), float(cost[best]))
