"""Bending the target onto the source along its own surface, so that "the same place" means the same
body part even when proportions or poses differ: the refinement of the landmark prior.

The landmark prior's place term compares positions once the target is turned and both boxes are
normalised. That is right for two characters alike in shape and pose, and wrong everywhere else: a
longer arm puts the woman's wrist where the man's hand is, and a walking leg is nowhere near a standing
one. :func:`aligned_places` starts from the map the prior gives (features + landmark descriptors +
place) and, round after round,

1. pulls each target vertex towards its matched source vertex, and each source vertex's match on the
   target (the map the other way) towards that source vertex: without these a shorter target arm
   would stop short of the source's hand, since no target vertex needs to go there;
2. smooths the pulls along the target's surface graph over a length ℓ (a sparse screened Poisson
   solve, (W + ℓ² L) u = Σ pulls, W the number of pulls per vertex, L the graph Laplacian with
   1/length² weights, so ℓ is a length in box diagonals whatever the resolution), so the target moves
   as a whole, not vertex by vertex;
3. moves the target by them and matches again, with the place term on the moved target.

ℓ shrinks from half the box to about a hundredth of it: first the proportions and the pose (a limb
swings as one piece, since the smoothing follows the surface), then the details. Bone names, vertex
order and connectivity shared between the meshes are never used.
Measured figures: bench/bench_cross.py and the README's known limits.
"""

from __future__ import annotations

import numpy as np

# Smoothing lengths (box diagonals), each used for ROUNDS rounds of move-and-match.
ALIGN_LENGTHS = (0.5, 0.3, 0.2, 0.12, 0.08, 0.05, 0.03, 0.02, 0.012)
ROUNDS = 2


def surface_laplacian(graph, points: np.ndarray):
    """(N, N) scipy CSC graph Laplacian of ``graph``'s edges (its pattern; weights are recomputed) with
    weights 1 / length² of the edges between ``points`` (N, 3)."""
    from scipy.sparse import coo_matrix, diags

    edges = graph.tocoo()
    lengths = np.linalg.norm(points[edges.row] - points[edges.col], axis=1)
    floor = max(float(np.median(lengths)) * 1e-3, 1e-12)  # coincident vertices bridged across pieces
    weights = coo_matrix((1.0 / np.maximum(lengths, floor) ** 2, (edges.row, edges.col)), shape=graph.shape).tocsr()
    weights = weights.maximum(weights.T)
    return (diags(np.asarray(weights.sum(axis=1)).ravel()) - weights).tocsc()


def smooth_along_surface(laplacian, pulls: np.ndarray, counts: np.ndarray, length: float) -> np.ndarray:
    """(N, 3) the displacement u that follows ``pulls`` (N, 3), the sum of ``counts`` (N,) pulls on
    each vertex, smoothly over ``length``: the solution of (diag(counts) + length² L) u = pulls."""
    from scipy.sparse import diags
    from scipy.sparse.linalg import factorized

    solve = factorized((diags(counts.astype(np.float64)) + length**2 * laplacian).tocsc())
    return np.stack([solve(np.ascontiguousarray(pulls[:, k])) for k in range(3)], axis=1)


def aligned_places(source_features, target_features, terms: list, places: int, target_graph,
                   lengths=ALIGN_LENGTHS, rounds: int = ROUNDS, device: str | None = None) -> np.ndarray:
    """(Nt, 3) float32: the place term's target points (``terms[places].query_points``, a
    :class:`sa3df.apps.match.RestProximity` in a common box-normalised frame) bent onto its source
    points (``reference_points``) by the rounds of the module notes. Each round matches
    ``target_features`` (Nt, E) to ``source_features`` (Ns, E) by cosine plus all ``terms`` (the place
    term on the moved points); ``target_graph`` (Nt, Nt) is the target's surface graph."""
    import copy

    from sa3df.apps.match import ProximitySum

    terms = list(terms)
    target_features, source_features = unit_features(target_features), unit_features(source_features)
    start = np.asarray(terms[places].query_points, dtype=np.float64)
    source = np.asarray(terms[places].reference_points, dtype=np.float64)
    if (len(target_features), len(source_features)) != (len(start), len(source)) or \
            target_features.shape[1] != source_features.shape[1]:
        raise ValueError(f"features {tuple(source_features.shape)} (source) and {tuple(target_features.shape)} "
                         f"(target) do not fit meshes of {len(source)} and {len(start)} vertices, or differ in width")
    laplacian = surface_laplacian(target_graph, start)
    moved = start

    def matches(points):
        terms[places] = copy.copy(terms[places])
        terms[places].query_points = points.astype(np.float32)
        return best_both_ways(target_features, source_features, ProximitySum(terms), device)

    for length in [length for length in lengths for _ in range(rounds)]:
        forward, backward = matches(moved)  # the last round's map is the caller's to make
        pulls, counts = source[forward] - moved, np.ones(len(moved))
        np.add.at(pulls, backward, source - moved[backward])
        np.add.at(counts, backward, 1.0)
        moved = moved + smooth_along_surface(laplacian, pulls, counts, length)
    return moved.astype(np.float32)


def unit_features(features):
    """(N, E) float32 CPU tensor of ``features`` (numpy or torch) with unit rows, checked finite once."""
    from sa3df.apps.match import _as_features, _unit_rows

    return _unit_rows(_as_features(features, "features"))


def best_both_ways(target_features, source_features, prior, device: str | None = None,
                   chunk_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The best source vertex of every target vertex (Nt,) and the best target vertex of every source
    vertex (Ns,) by cosine + ``prior`` (one score, read along rows and along columns), in one pass of
    ``chunk_size`` target rows at a time (default: the memory budget of
    :func:`sa3df.apps.match.auto_chunk_size`). The features are :func:`unit_features` tensors."""
    import torch

    from sa3df.apps.match import auto_chunk_size
    from sa3df.core.device import choose_device

    dev = choose_device(device or "auto")
    references = source_features.to(dev)
    forward = torch.empty(len(target_features), dtype=torch.int64)
    best = torch.full((len(references),), -torch.inf, device=dev)
    backward = torch.zeros(len(references), dtype=torch.int64, device=dev)
    chunk = chunk_size or max(1, auto_chunk_size(len(references)) // 2)  # the bonus needs a second block
    for start in range(0, len(target_features), chunk):
        rows = slice(start, start + chunk)
        block = prior.add_bonus(target_features[rows].to(dev) @ references.T, rows)
        forward[rows] = block.argmax(dim=1).cpu()
        values, winners = block.max(dim=0)
        better = values > best
        best = torch.where(better, values, best)
        backward = torch.where(better, winners + start, backward)
    return forward.numpy(), backward.cpu().numpy()
