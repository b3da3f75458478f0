"""Segment Parts for characters: k parts in which left and right limbs never share one
(:func:`sided_parts`, on one k-means of :mod:`sa3df.apps.segment`), and those parts made on one mesh and
carried to the others by the correspondence (:func:`carried_parts`, the add-on's and CLI's default).
"""

from __future__ import annotations

import numpy as np

from sa3df.apps.match import _as_features, _unit_rows
from sa3df.apps.segment import joint_kmeans, smooth_labels
from sa3df.core.progress import ProgressFn, report

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
    covers on the first: 0.814 on average, 0.686 at worst, limbs apart on 15 of the 16 rows. Returns what
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
