"""Part segmentation from features: joint k-means over several meshes, label transfer, clean-up.

Features are compared by direction everywhere in sa3df, so rows are L2-normalised before
clustering (Euclidean k-means on unit vectors = spherical clustering). One k-means over all meshes
gives labels that mean the same part on every mesh as far as their features are alike; between
different characters the map is the surer link (:func:`sa3df.apps.limb_parts.carried_parts`, Segment
Parts' default; left and right limbs apart: :mod:`sa3df.apps.limb_parts`). Runs in torch: on CUDA when
present.
"""

from __future__ import annotations

import numpy as np
import torch

from sa3df.core.device import choose_device
from sa3df.apps.match import RestProximity, _as_features, _unit_rows, auto_chunk_size, k_nearest_neighbors, vertex_adjacency
from sa3df.core.progress import ProgressFn, report


def _nearest_centroid(points: torch.Tensor, centroids: torch.Tensor,
                      point_norms: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Label and squared distance of each point to its nearest centroid, chunked to bound memory.

    ``point_norms`` (N,) = |p|², precomputed once by callers that assign the same points repeatedly.
    """
    if point_norms is None:
        point_norms = (points * points).sum(1)
    labels = torch.empty(len(points), dtype=torch.int64, device=points.device)
    dist = torch.empty(len(points), dtype=points.dtype, device=points.device)
    c_norm = (centroids * centroids).sum(1)
    chunk = auto_chunk_size(len(centroids))
    for s in range(0, len(points), chunk):
        partial = c_norm - 2 * points[s:s + chunk] @ centroids.T  # |c|² − 2p·c: same argmin as |p − c|²
        best, labels[s:s + chunk] = partial.min(dim=1)
        dist[s:s + chunk] = best + point_norms[s:s + chunk]
    return labels, dist.clamp_min(0)


def _cluster_sums(points: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """(k, E) sum of the points in each cluster, as a one-hot matrix product (BLAS, not a serial scatter)."""
    one_hot = torch.zeros(k, len(points), dtype=points.dtype, device=points.device)
    one_hot[labels, torch.arange(len(points), device=points.device)] = 1.0
    return one_hot @ points


def _kmeans_plus_plus(points: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Greedy k-means++ seeding: draw 2 + ln k candidates ∝ squared distance to the chosen centres and
    keep the one that lowers the total most (as scikit-learn does; plain k-means++ merges clusters more often)."""
    norms = (points * points).sum(1)

    def squared_distances(ids: torch.Tensor) -> torch.Tensor:  # (len(ids), N), via one matrix product
        return (norms[ids, None] + norms[None] - 2 * points[ids] @ points.T).clamp_min(0)

    first = torch.randint(len(points), (1,), generator=generator)
    centres = [points[first[0]]]
    closest = squared_distances(first)[0]
    trials = 2 + int(np.log(k))
    for _ in range(1, k):
        total = closest.sum()
        if total <= 0:  # fewer distinct points than clusters: repeat one
            candidates = torch.randint(len(points), (trials,), generator=generator)
        else:
            candidates = torch.multinomial((closest / total).cpu(), trials, replacement=True, generator=generator)
        distances = squared_distances(candidates.to(points.device))
        potentials = torch.minimum(closest[None], distances).sum(1)
        best = int(potentials.argmin())
        centres.append(points[candidates[best]])
        closest = torch.minimum(closest, distances[best])
    return torch.stack(centres)


def _lloyd(points: torch.Tensor, centroids: torch.Tensor, iterations: int, tolerance: float,
           progress: ProgressFn | None) -> tuple[torch.Tensor, float]:
    k = len(centroids)
    norms = (points * points).sum(1)
    for it in range(iterations):
        labels, dist = _nearest_centroid(points, centroids, norms)
        sums = _cluster_sums(points, labels, k)
        counts = torch.bincount(labels, minlength=k).to(points.dtype)
        new = sums / counts.clamp_min(1)[:, None]
        empty = torch.nonzero(counts == 0).ravel()
        if len(empty):  # re-seed an empty cluster at the worst-fitting points
            new[empty] = points[dist.topk(len(empty)).indices]
        shift = float(((new - centroids) ** 2).sum(1).max())
        centroids = new
        report(progress, (it + 1) / iterations, "k-means")
        if shift <= tolerance:
            break
    labels, dist = _nearest_centroid(points, centroids, norms)
    return centroids, float(dist.sum())


def joint_kmeans(
    features: list, k: int, seed: int = 0, max_points: int = 100_000, iterations: int = 100,
    restarts: int = 3, tolerance: float = 1e-7, device: str | None = None,
    progress: ProgressFn | None = None,
) -> tuple[list[np.ndarray], np.ndarray]:
    """One k-means over the (L2-normalised) features of all meshes.

    ``features`` list of (Ni, E). Fits on at most ``max_points`` rows sampled uniformly from all
    meshes (seeded), keeps the best of ``restarts`` greedy k-means++ runs (one run lands in a
    local minimum that merges two clusters about one time in four on separated data),
    then labels every row by its nearest centroid. Clusters are numbered by decreasing size.
    Returns (labels list of (Ni,) int64, centroids (k, E) float32 unit-length cluster directions).
    """
    if not features:
        raise ValueError("joint_kmeans needs at least one feature array")
    blocks = [_unit_rows(_as_features(f, f"features[{i}]")) for i, f in enumerate(features)]
    if len({b.shape[1] for b in blocks}) != 1:
        raise ValueError(f"feature arrays differ in width: {[tuple(b.shape) for b in blocks]}")
    stacked = torch.cat(blocks)
    k = int(k)
    if not 1 <= k <= len(stacked):
        raise ValueError(f"k={k} must lie in [1, {len(stacked)}] (the number of feature rows)")
    dev = choose_device(device or "auto")
    generator = torch.Generator().manual_seed(seed)
    fit = stacked
    if len(stacked) > max_points:
        fit = stacked[torch.randperm(len(stacked), generator=generator)[:max_points]]
    fit = fit.to(dev)
    best, best_inertia = None, float("inf")
    for r in range(max(1, restarts)):
        start = _kmeans_plus_plus(fit.cpu(), k, generator).to(dev)
        sub = (lambda f, m="", r=r: report(progress, 0.9 * (r + f) / max(1, restarts), m)) if progress else None
        centroids, inertia = _lloyd(fit, start, iterations, tolerance, sub)
        if inertia < best_inertia:
            best, best_inertia = centroids, inertia
    labels, _ = _nearest_centroid(stacked.to(dev), best)
    order = torch.argsort(torch.bincount(labels, minlength=k), descending=True, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(k, device=order.device)
    labels, best = rank[labels].cpu(), best[order].cpu()
    report(progress, 1.0, "k-means")
    splits = np.cumsum([len(b) for b in blocks])[:-1]
    return np.split(labels.numpy(), splits), _unit_rows(best).numpy()


def transfer_labels(source_labels, source_features, target_features, k: int = 8,
                    device: str | None = None, progress: ProgressFn | None = None,
                    proximity: RestProximity | None = None) -> np.ndarray:
    """Label each target vertex by a similarity-weighted vote of its ``k`` most similar source vertices.

    ``source_labels`` (Ns,) ints (negative = unlabelled, never voted for), features (Ns, E)/(Nt, E).
    Returns (Nt,) int64; a target vertex whose neighbours are all unlabelled gets -1. ``proximity``
    adds a rest-pose spatial bonus (:class:`sa3df.apps.match.RestProximity`) to the similarities that rank
    and weigh the neighbours.
    """
    labels = np.asarray(source_labels)
    if labels.ndim != 1 or len(labels) != len(source_features):
        raise ValueError(f"source_labels must be (Ns,) = ({len(source_features)},), got {labels.shape}")
    k = int(min(k, len(labels)))
    idx, sim = k_nearest_neighbors(target_features, source_features, k=k, device=device, progress=progress,
                                   proximity=proximity)
    if proximity is not None:  # vote by the score the neighbours were ranked by
        sim = sim + proximity.pair_bonus(idx)
    neighbour_labels = labels[idx]
    n_labels = int(labels.max()) + 1 if (labels >= 0).any() else 0
    if n_labels == 0:
        return np.full(len(idx), -1, dtype=np.int64)
    votes = np.zeros((len(idx), n_labels))
    weight = np.clip(sim, 1e-6, None) * (neighbour_labels >= 0)
    rows = np.repeat(np.arange(len(idx)), k)
    np.add.at(votes, (rows, np.clip(neighbour_labels, 0, None).ravel()), weight.ravel())
    out = votes.argmax(axis=1).astype(np.int64)
    out[votes.max(axis=1) <= 0] = -1
    return out


def smooth_labels(labels, faces, iterations: int = 2) -> np.ndarray:
    """Majority filter over each vertex's closed 1-ring, ``iterations`` times, to remove speckle.

    ``labels`` (N,) ints, ``faces`` (F, 3). A vertex keeps its label on a tie. Negative labels
    (unlabelled) take part in the vote like any other label. Returns (N,) int64.
    """
    from scipy.sparse import coo_matrix

    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    ring = vertex_adjacency(faces, n)
    values, current = np.unique(labels, return_inverse=True)
    for _ in range(max(0, iterations)):
        one_hot = coo_matrix((np.ones(n), (np.arange(n), current)), shape=(n, len(values))).tocsr()
        counts = (ring @ one_hot + one_hot).toarray()
        own = counts[np.arange(n), current]
        best = counts.argmax(axis=1)
        new = np.where(counts[np.arange(n), best] > own, best, current)
        if np.array_equal(new, current):
            break
        current = new
    return values[current]
