"""Part segmentation from features: joint k-means over several meshes, left and right limbs apart, parts
carried from one mesh to others by the correspondence, label transfer, clean-up.

Features are compared by direction everywhere in sa3df, so rows are L2-normalised before
clustering (Euclidean k-means on unit vectors = spherical clustering). One k-means over all meshes
gives labels that mean the same part on every mesh as far as their features are alike; between
different characters the map is the surer link (:func:`carried_parts`, Segment Parts' default).
Runs in torch: on CUDA when present.
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


SIDE_BAND = 0.02  # vertices this close (× box diagonal) to the mirror plane are on neither side
MINOR_SIDE = 0.1  # a part with at least this share of its vertices on each side ...
CENTRAL = 0.25  # ... and less than this share on the plane spans two mirrored limbs (torsos, heads: 0.4-0.7)
OVERSPLIT = 2  # k-means finds this many times k clusters (limbs apart from the pelvis), merged back to k
MERGE_CENTRAL = 0.15  # merging, a part with this share on the plane counts as central (a head half: ~0.2)
MISSING = 0.1  # a part with under this share of its mean share on some mesh is that mesh's alone (hair)
JOINED = 0.3  # a part whose sides are joined (within it) for under this share is two limbs, however central
REACH = 1.5  # a central part's vertex nearer to a limb than this times its distance to the plane joins the limb


def _two_sided(left, right, plane, total, joined):
    """Whether parts with these vertex counts (+1 side, -1 side, plane, all) and share of sides joined
    (:func:`_joined_sides`) span two mirrored limbs: legs that touch the plane are still two legs."""
    return (left >= MINOR_SIDE * total) & (right >= MINOR_SIDE * total) & (
        (plane < CENTRAL * total) | (joined < JOINED))


def _joined_sides(labels: np.ndarray, sides: np.ndarray, meshes: list) -> np.ndarray:
    """(M, n) per mesh and part, the share of its smaller side that lies in pieces (connected within the
    part) holding vertices of both sides: ~1 for a torso, ~0 for two legs that only touch the plane."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = int(labels.max()) + 1
    out, start = np.ones((len(meshes), n)), 0
    for m, mesh in enumerate(meshes):
        lab, side = labels[start:start + mesh.n_vertices], sides[start:start + mesh.n_vertices]
        start += mesh.n_vertices
        edges = mesh.faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
        edges = edges[lab[edges[:, 0]] == lab[edges[:, 1]]]
        graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(len(lab),) * 2)
        piece = connected_components(graph, directed=False)[1]
        plus, minus = (np.bincount(piece, weights=side == s, minlength=piece.max() + 1) for s in (1, -1))
        piece_part = np.zeros(len(plus), np.int64)
        piece_part[piece] = lab
        joined = np.bincount(piece_part, weights=np.minimum(plus, minus), minlength=n)
        smaller = np.minimum(*(np.bincount(lab, weights=side == s, minlength=n) for s in (1, -1)))
        out[m] = joined / np.maximum(smaller, 1)
    return out


def mesh_sides(meshes: list, up: str = "z") -> list[np.ndarray]:
    """(N_i,) side of every vertex: +1 / -1 on either side of the mirror plane, 0 within ``SIDE_BAND`` of it.

    Every mesh is first turned about ``up`` to face like the first (:func:`sa3df.core.orient.face_like_first`,
    as the features were), so +1 is the same side of every body; the plane is normal to the first mesh's
    horizontal axis of best mirror symmetry (:func:`sa3df.apps.evaluate.symmetry_axis`) through each box centre.
    """
    return [_sides(lateral, band) for lateral, band in lateral_offsets(meshes, up)]


def _sides(lateral: np.ndarray, band: float) -> np.ndarray:
    return np.where(np.abs(lateral) <= band, 0, np.sign(lateral)).astype(np.int64)


def lateral_offsets(meshes: list, up: str = "z") -> list[tuple[np.ndarray, float]]:
    """(signed distance (N_i,) of every vertex from the mirror plane, ``SIDE_BAND`` in the mesh's units) per
    mesh, in the frame of :func:`mesh_sides`."""
    from sa3df.apps.evaluate import symmetry_axis
    from sa3df.core.orient import AXES, face_like_first

    turned = face_like_first(list(meshes), up)
    axis = symmetry_axis(turned[0].vertices, [a for a in range(3) if a != AXES[up]])[0]
    out = []
    for mesh in turned:
        v = mesh.vertices
        lateral = v[:, axis] - (v[:, axis].min() + v[:, axis].max()) / 2
        out.append((lateral, SIDE_BAND * float(np.linalg.norm(np.ptp(v, axis=0)))))
    return out


def _pull_limb_roots(labels: np.ndarray, mesh, lateral: np.ndarray, sides: np.ndarray) -> np.ndarray:
    """A central part's vertex that lies nearer, along the surface, to a part of its own side (a limb) than
    to the mirror plane joins that part: the thighs k-means gave the pelvis, the upper legs in a body part."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import dijkstra

    n = int(labels.max()) + 1
    left, right, plane, total = (np.bincount(labels, weights=w, minlength=n) for w in
                                 (sides > 0, sides < 0, sides == 0, np.ones(len(labels))))
    limb = plane < MERGE_CENTRAL * total
    part_side = np.where(limb & (left >= (1 - MINOR_SIDE) * (left + right)), 1,
                         np.where(limb & (right >= (1 - MINOR_SIDE) * (left + right)), -1, 0))
    edges = mesh.faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    out = labels.copy()
    for side in (1, -1):
        source = part_side[labels] == side
        movable = (part_side[labels] == 0) & (sides == side)
        if not source.any() or not movable.any():
            continue
        keep = edges[(source | movable)[edges].all(axis=1)]
        length = np.linalg.norm(mesh.vertices[keep[:, 0]] - mesh.vertices[keep[:, 1]], axis=1)
        graph = coo_matrix((length, (keep[:, 0], keep[:, 1])), shape=(len(labels),) * 2).tocsr()
        dist, _, nearest = dijkstra(graph, directed=False, indices=np.flatnonzero(source), min_only=True,
                                    return_predecessors=True)
        move = movable & (dist < REACH * np.abs(lateral))
        out[move] = labels[nearest[move]]
    return out


def _side_counts(labels: np.ndarray, sides: np.ndarray, mesh_ids: np.ndarray, n: int) -> list[np.ndarray]:
    """(M, n) vertex counts of every part on every mesh: on the +1 side, the -1 side, the plane, all."""
    cell = mesh_ids * n + labels
    size = (int(mesh_ids.max()) + 1) * n
    counts = [np.bincount(cell, weights=sides == s, minlength=size) for s in (1, -1, 0)]
    return [c.reshape(-1, n) for c in counts + [np.bincount(cell, minlength=size).astype(np.float64)]]


def _split_mirrored(labels: np.ndarray, sides: np.ndarray, mesh_ids: np.ndarray, meshes: list) -> np.ndarray:
    """Give the -1 side of every part that spans two mirrored limbs (both legs) on a mesh a label of its own
    (the same new label on every mesh)."""
    n = int(labels.max()) + 1
    split = _two_sided(*_side_counts(labels, sides, mesh_ids, n), _joined_sides(labels, sides, meshes))
    return np.where(split[mesh_ids, labels] & (sides < 0), labels + n, labels)


def _limb_sides(labels: np.ndarray, sides: np.ndarray, mesh_ids: np.ndarray) -> np.ndarray:
    """(N,) the side of every vertex in a part that is not central on its mesh (a torso's vertices: 0)."""
    n = int(labels.max()) + 1
    *_, plane, total = _side_counts(labels, sides, mesh_ids, n)
    central = plane >= MERGE_CENTRAL * np.maximum(total, 1)
    return np.where(central[mesh_ids, labels], 0, sides)


def _merge_tiers(limb_counts: list[np.ndarray]) -> np.ndarray:
    """(n, n) which merges come first: 0 when a part is missing from some mesh (the woman's hair: it gives
    no part the other mesh shares), 1 between two central parts (two head pieces), 2 for the others
    (limbs, which k-means over k clusters would have joined to the torso)."""
    left, right, _, total = limb_counts
    sided = (left + right).sum(0) > 0.5 * total.sum(0)
    tiers = np.where(sided[:, None] | sided[None], 2, 1)
    if len(total) > 1:
        share = total / np.maximum(total.sum(1, keepdims=True), 1)
        missing = share.min(0) < MISSING * share.mean(0)
        tiers = np.where(missing[:, None] | missing[None], 0, tiers)
    return tiers


def _merge_down(points: np.ndarray, labels: np.ndarray, sides: np.ndarray, mesh_ids: np.ndarray,
                k: int) -> np.ndarray:
    """Merge the cheapest pair of parts until ``k`` are left, never a pair whose limbs (vertices of parts
    not central on their mesh) lie on both sides of some mesh. Cheapest: first by :func:`_merge_tiers`,
    then by Ward (the rise in squared error). Stops early when only such pairs remain."""
    labels = np.unique(labels, return_inverse=True)[1]
    limbs = _limb_sides(labels, sides, mesh_ids)
    while labels.max() + 1 > k:
        n = np.bincount(labels).astype(np.float64)
        centroids = np.stack([points[labels == c].mean(0) for c in range(len(n))])
        counts = _side_counts(labels, limbs, mesh_ids, len(n))
        left, right = (c[:, :, None] + c[:, None, :] for c in counts[:2])
        both = (left >= MINOR_SIDE * (left + right)) & (right >= MINOR_SIDE * (left + right)) & (left + right > 0)
        squared = ((centroids[:, None] - centroids[None]) ** 2).sum(-1)
        ward = n[:, None] * n[None] / (n[:, None] + n[None]) * squared
        cost = _merge_tiers(counts) * (ward.max() + 1) + ward  # the tier first, Ward within it
        cost[both.any(axis=0)] = np.inf
        np.fill_diagonal(cost, np.inf)
        a, b = np.unravel_index(np.argmin(cost), cost.shape)
        if not np.isfinite(cost[a, b]):
            break
        labels = np.unique(np.where(labels == b, a, labels), return_inverse=True)[1]
    return labels


def sided_parts(features: list, meshes: list, k: int, up: str = "z", seed: int = 0, smooth_iterations: int = 2,
                device: str | None = None, progress: ProgressFn | None = None) -> tuple[list[np.ndarray], dict]:
    """``k`` consistent parts over ``meshes`` (list of :class:`sa3df.core.mesh.Mesh`, features (N_i, E)) in
    which left and right limbs never share a part.

    Features alone are mirror-symmetric (both legs look alike), so one joint k-means puts both legs in one
    part, and with k clusters the thighs go with the pelvis. Here k-means finds ``OVERSPLIT`` × k clusters;
    the -1 side (:func:`mesh_sides`) of every cluster that spans two mirrored limbs (:func:`_two_sided`)
    becomes a cluster of its own; clusters are merged back to ``k`` (:func:`_merge_down`: never a left limb
    with a right one); a central part's vertices near a limb join it (:func:`_pull_limb_roots`), and labels
    are cleaned with :func:`smooth_labels`. Parts are numbered by decreasing size. Returns (labels list of
    (N_i,) int64, info): ``info["k"]`` parts over all meshes (``k`` unless only left/right pairs were left to
    merge), ``info["parts_used"]`` the distinct parts on each mesh (a part can be absent from a mesh: hair).
    """
    if len(features) != len(meshes):
        raise ValueError(f"got {len(features)} feature arrays for {len(meshes)} meshes")
    clusters = min(OVERSPLIT * int(k), sum(len(f) for f in features))
    labels, _ = joint_kmeans(features, clusters, seed=seed, device=device, progress=progress)
    offsets = lateral_offsets(meshes, up)
    mesh_side = [_sides(lateral, band) for lateral, band in offsets]
    sides = np.concatenate(mesh_side)
    mesh_ids = np.repeat(np.arange(len(meshes)), [len(f) for f in features])
    points = np.concatenate([_unit_rows(_as_features(f, "features")).numpy() for f in features])
    pooled = _split_mirrored(np.concatenate(labels), sides, mesh_ids, meshes)
    pooled = _merge_down(points, pooled, sides, mesh_ids, k)
    splits = np.cumsum([len(f) for f in features])[:-1]
    labels = [smooth_labels(_pull_limb_roots(lab, m, lateral, side), m.faces, smooth_iterations)
              for lab, m, (lateral, _), side in zip(np.split(pooled, splits), meshes, offsets, mesh_side)]
    return _numbered_by_size(labels)


def carried_parts(features: list, meshes: list, k: int, up: str = "z", seed: int = 0, smooth_iterations: int = 2,
                  maps: list | None = None, device: str | None = None,
                  progress: ProgressFn | None = None) -> tuple[list[np.ndarray], dict]:
    """``k`` parts on ``meshes[0]`` (:func:`sided_parts` on it alone), carried to every other mesh by its
    map to the first: ``maps[i - 1]`` (N_i,) source vertex of each vertex of mesh i, or, when None, the
    default match (:func:`sa3df.apps.match.matching_prior` with the features: the aligned landmark prior).

    One k-means over every mesh makes parts that mean the same thing only as far as the features are alike
    across the meshes, and different characters' trained features are not (bench/bench_cross.py, 16 rows,
    trained features: part agreement 0.739 on average and 0.388 at worst, a left and a right limb in one
    part on the woman -> the animated human). Carried by the map, a part covers on every mesh what it
    covers on the first: 0.814 on average, 0.690 at worst, limbs apart on 15 of the 16 rows. Returns what
    :func:`sided_parts` does (``info["parts_used"]``: a small part can miss a mesh)."""
    if len(features) != len(meshes):
        raise ValueError(f"got {len(features)} feature arrays for {len(meshes)} meshes")
    if maps is not None and len(maps) != len(meshes) - 1:
        raise ValueError(f"got {len(maps)} maps for {len(meshes) - 1} meshes after the first")
    first, _ = sided_parts(features[:1], meshes[:1], k, up=up, seed=seed, smooth_iterations=smooth_iterations,
                           device=device, progress=progress)
    labels = [first[0]]
    for i in range(1, len(meshes)):
        report(progress, i / len(meshes), f"carrying the parts to '{meshes[i].name}'")
        t2s = maps[i - 1] if maps is not None else _default_map(features[0], features[i], meshes[0], meshes[i],
                                                                  up, device)
        if len(t2s) != meshes[i].n_vertices:
            raise ValueError(f"map {i} has {len(t2s)} entries for the {meshes[i].n_vertices} vertices of "
                             f"'{meshes[i].name}'")
        labels.append(smooth_labels(first[0][np.asarray(t2s)], meshes[i].faces, smooth_iterations))
    return _numbered_by_size(labels)


def _default_map(source_features, target_features, source_mesh, target_mesh, up, device) -> np.ndarray:
    from sa3df.apps.match import correspondence, matching_prior

    prior = matching_prior(source_mesh, target_mesh, up=up, features=(source_features, target_features),
                           device=device)
    return correspondence(source_features, target_features, proximity=prior, device=device).target_to_source


def _numbered_by_size(labels: list[np.ndarray]) -> tuple[list[np.ndarray], dict]:
    """Labels renumbered 0.. by decreasing size over all meshes, and :func:`sided_parts`' info."""
    pooled = np.concatenate(labels)
    order = np.argsort(-np.bincount(pooled, minlength=pooled.max() + 1), kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    labels = [rank[lab] for lab in labels]
    return labels, {"k": int(len(np.unique(pooled))), "parts_used": [int(len(np.unique(lab))) for lab in labels]}
