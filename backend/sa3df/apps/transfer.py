"""Skin-weight transfer through feature correspondence.

Each target vertex takes a similarity-weighted blend of the weights of its ``k`` most similar
source vertices (a soft nearest neighbour: robust to one bad match, smooth across the surface),
optionally smoothed over the target's 1-ring, then cleaned the way game engines and Blender's
"Limit Total" expect: at most ``max_influences`` bones per vertex, tiny weights dropped, rows summing to 1.
"""

from __future__ import annotations

import numpy as np

from sa3df.apps.match import RestProximity, k_nearest_neighbors, vertex_adjacency
from sa3df.core.progress import ProgressFn, sub_progress


def blend_weights(source_weights: np.ndarray, indices: np.ndarray, similarity: np.ndarray,
                  temperature: float) -> np.ndarray:
    """(Nt, K) blend of source rows ``indices`` (Nt, k) with softmax(similarity / temperature) weights."""
    logits = (similarity - similarity[:, :1]) / max(temperature, 1e-8)  # best neighbour → exp(0) = 1
    mix = np.exp(logits)
    mix /= mix.sum(axis=1, keepdims=True)
    return np.einsum("tk,tkj->tj", mix, source_weights[indices])


def smooth_on_surface(values: np.ndarray, faces: np.ndarray, iterations: int, strength: float = 0.5) -> np.ndarray:
    """Move each vertex's row ``strength`` of the way to its 1-ring mean, ``iterations`` times."""
    if iterations <= 0:
        return values
    from scipy.sparse import diags

    ring = vertex_adjacency(faces, len(values))
    degree = np.asarray(ring.sum(axis=1)).ravel()
    mean_of_ring = diags(np.divide(1.0, degree, out=np.zeros_like(degree), where=degree > 0)) @ ring
    isolated = degree == 0
    for _ in range(iterations):
        averaged = mean_of_ring @ values
        averaged[isolated] = values[isolated]
        values = (1 - strength) * values + strength * averaged
    return values


def limit_influences(weights: np.ndarray, max_influences: int | None = 4, min_weight: float = 1e-3,
                     normalize: bool = True) -> np.ndarray:
    """Keep each row's ``max_influences`` largest weights, drop those below ``min_weight`` (relative to
    the row sum), renormalise rows to sum 1 (all-zero rows stay zero). Works on a copy."""
    w = np.clip(np.asarray(weights, dtype=np.float64), 0.0, None)
    if max_influences is not None and 0 < max_influences < w.shape[1]:
        order = np.argsort(-w, axis=1, kind="stable")[:, :max_influences]
        keep = np.zeros_like(w, dtype=bool)
        np.put_along_axis(keep, order, True, axis=1)
        w = np.where(keep, w, 0.0)
    total = w.sum(axis=1, keepdims=True)
    w = np.where(w >= min_weight * total, w, 0.0)
    if normalize:
        total = w.sum(axis=1, keepdims=True)
        w = np.divide(w, total, out=np.zeros_like(w), where=total > 0)
    return w


def transfer_vertex_weights(
    source_weights, source_features, target_features, k: int = 4, temperature: float = 0.01,
    target_faces: np.ndarray | None = None, smooth_iterations: int = 2, normalize: bool = True,
    max_influences: int | None = 4, min_weight: float = 1e-3, device: str | None = None,
    progress: ProgressFn | None = None, proximity: RestProximity | None = None,
) -> np.ndarray:
    """Transfer per-vertex weights (skinning weights, or any (Ns, K) field) from source to target.

    ``source_weights`` (Ns, K) ≥ 0, one column per bone/vertex group; ``source_features`` (Ns, E) and
    ``target_features`` (Nt, E) compared by cosine. Each target vertex blends its ``k`` most similar
    source vertices with softmax(similarity / ``temperature``) weights; with ``target_faces`` the
    result is smoothed over the target 1-ring ``smooth_iterations`` times; then at most
    ``max_influences`` weights per vertex are kept (None = all), weights under ``min_weight`` × row
    sum dropped, rows normalised to 1 when ``normalize``. Source vertices without any weight are
    left out of the matching (they would hand their emptiness on). Returns (Nt, K) float32.
    With k=1 and no smoothing, identical meshes get their weights back exactly. ``proximity`` (target
    points as queries, source points as references) adds a rest-pose spatial bonus
    (:class:`sa3df.apps.match.RestProximity`) to the similarities that rank and blend the neighbours.
    """
    weights = np.asarray(source_weights, dtype=np.float64)
    if weights.ndim != 2 or len(weights) != len(source_features):
        raise ValueError(f"source_weights must be (Ns, K) with Ns = {len(source_features)} source vertices, "
                         f"got shape {weights.shape}")
    if not np.isfinite(weights).all() or (weights < 0).any():
        raise ValueError("source_weights must be finite and non-negative")
    weighted = weights.sum(axis=1) > 0  # unweighted source vertices carry no information: never matched
    if not weighted.any():
        raise ValueError("source_weights are all zero: no source vertex belongs to any group")
    reference = np.asarray(source_features)[weighted] if not weighted.all() else source_features
    if proximity is not None and not weighted.all():
        proximity = proximity.among_references(weighted)
    weights = weights[weighted]
    k = int(min(max(k, 1), len(weights)))
    indices, similarity = k_nearest_neighbors(target_features, reference, k=k, device=device,
                                              progress=sub_progress(progress, 0.0, 0.9), proximity=proximity)
    if proximity is not None:  # blend by the score the neighbours were ranked by
        similarity = similarity + proximity.pair_bonus(indices)
    blended = blend_weights(weights, indices, similarity.astype(np.float64), temperature)
    if target_faces is not None:
        faces = np.asarray(target_faces)
        if faces.size and faces.max() >= len(blended):
            raise ValueError(f"target_faces index vertex {faces.max()}, "
                             f"but the target has {len(blended)} vertices")
        blended = smooth_on_surface(blended, faces, smooth_iterations)
    cleaned = limit_influences(blended, max_influences, min_weight, normalize)
    if progress is not None:
        progress(1.0, "weights transferred")
    return cleaned.astype(np.float32)
