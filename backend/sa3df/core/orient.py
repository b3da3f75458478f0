"""Turning meshes to face the same way before extrinsic features are computed.

Base features that include position and normal (the geometric extractor, and what a camera sees) only
agree between two meshes that face the same way: a character facing +X and one facing -Y would have
their left and right sides confused. :func:`yaw_to_match` finds the turn about the up axis that best
overlays one shape on another (a rotation, never a reflection, so left stays left).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sa3df.core.mesh import Mesh

AXES = {"x": 0, "y": 1, "z": 2}
MAX_POINTS = 3000  # per shape, for the overlay score
KEEP_MARGIN = 0.1  # a turn must overlay at least 10% better than facing as given


def rotation_about(axis: int, angle: float) -> np.ndarray:
    """3x3 rotation by ``angle`` radians about coordinate ``axis`` (0, 1, 2)."""
    u, v = (axis + 1) % 3, (axis + 2) % 3
    r = np.eye(3)
    r[u, u], r[u, v], r[v, u], r[v, v] = np.cos(angle), -np.sin(angle), np.sin(angle), np.cos(angle)
    return r


def box_normalized(points) -> np.ndarray:
    """(N, 3) float64: bounding-box centre at the origin, box diagonal 1."""
    points = np.asarray(points, dtype=np.float64)
    centred = points - (points.min(axis=0) + points.max(axis=0)) / 2
    return centred / max(float(np.linalg.norm(np.ptp(points, axis=0))), 1e-30)


def _sample(points: np.ndarray, seed: int = 0) -> np.ndarray:
    if len(points) <= MAX_POINTS:
        return points
    return points[np.random.default_rng(seed).choice(len(points), MAX_POINTS, replace=False)]


def yaw_to_match(reference: np.ndarray, moving: np.ndarray, up: str = "z", turns: int = 16) -> np.ndarray:
    """The 3x3 rotation about ``up`` ("x", "y" or "z") that best overlays ``moving`` (M, 3) on
    ``reference`` (N, 3): the smallest symmetric mean nearest-point distance after centring and scaling
    both bounding boxes, over ``turns`` evenly spaced angles. The identity is kept unless a turn scores
    clearly better (by ``KEEP_MARGIN``): meshes that already face alike, such as two poses of one
    character, are never turned by a near tie."""
    from scipy.spatial import cKDTree

    if up not in AXES:
        raise ValueError(f"up axis must be one of x, y, z, not '{up}'")
    axis = AXES[up]
    ref = box_normalized(_sample(np.asarray(reference, dtype=np.float64)))
    ref_tree = cKDTree(ref)
    moving = _sample(np.asarray(moving, dtype=np.float64), seed=1)
    scores = []
    for k in range(turns):
        turned = box_normalized(moving @ rotation_about(axis, 2 * np.pi * k / turns).T)
        scores.append(ref_tree.query(turned)[0].mean() + cKDTree(turned).query(ref)[0].mean())
    best = int(np.argmin(scores))
    if scores[best] > (1 - KEEP_MARGIN) * scores[0]:
        best = 0
    return rotation_about(axis, 2 * np.pi * best / turns)


def face_like_first(meshes: list[Mesh], up: str) -> list[Mesh]:
    """Copies of ``meshes`` with every mesh after the first turned about ``up`` to face like the first.

    Only the geometry used for features changes; vertex order, faces and the input map stay.
    """
    if len(meshes) < 2:
        return list(meshes)
    turned = [meshes[0]]
    for mesh in meshes[1:]:
        rotation = yaw_to_match(meshes[0].vertices, mesh.vertices, up)
        turned.append(dataclasses.replace(mesh, vertices=mesh.vertices @ rotation.T))
    return turned
