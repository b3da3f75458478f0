"""Extremities two different characters share, and the pose-invariant matching prior built on them.

Per-mesh features and plain positions cannot tell two characters' hands from their forearms once the
proportions or the pose differ. Extremities can: hands, feet, head and tail are the local maxima of the
average geodesic distance (AGD) on any body, in any pose. :func:`landmark_prior`

1. finds the extremities of each mesh (:func:`extremities`; AGD values within 1e-5 of each other are
   equal, so the tied corners of a box piece give the same extremity whatever the float noise);
2. pairs them across the meshes (:mod:`sa3df.apps.landmark_pairing`) by the distances between them and
   their AGD (pose-invariant), by their places once the target is turned to face like the source and
   by the way the feet point (the turn is fitted per candidate pairing to both, so mirror images score
   apart, and the feet tell front from back when the extremities alone are front/back symmetric, as a
   T-pose is), and, given an up axis, by how well the order of their heights agrees (head above hands,
   arms out or hanging); where exchanging two extremities' mates makes little difference to all that
   (left and right feet in a stride), their order is read from their roots (hips, shoulders), which a
   stride does not swing the way it swings the tips;
3. describes every vertex by its distances to the paired extremities, each divided by that
   extremity's mean distance to the others (so a longer arm is followed), and
4. returns a bounded matching bonus (:class:`sa3df.apps.match.ProximitySum`): candidates with alike
   descriptors, plus candidates at the same place in the faced-alike box-normalised shapes; given the
   features to be matched, the target is first bent onto the source (:mod:`sa3df.apps.align`), so the
   place counts across proportions and poses too.

Distances are shortest paths on the edge graph; separate pieces (eyes, hair, hands modelled apart) are
bridged to their nearest neighbours so every vertex gets a finite descriptor, or, for a rig's pieces, to
the pieces the rig joins them to (:func:`rig_piece_links`). Bone names are never read.
Measured figures: bench/bench_cross.py and the README's known limits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sa3df.core.mesh import Mesh

LANDMARK_PRIOR = 3.0  # default weight of each landmark bonus against the features' cosine (bench_cross)
MAX_EXTREMITIES = 7  # head, four feet, tail and one more: 5,040 candidate pairings at most
FACING_DOUBT = 0.5  # feet whose unit directions average shorter than this say nothing about facing
AXES = {"x": 0, "y": 1, "z": 2}


def surface_graph(mesh: Mesh, bridges: int = 3):
    """(N, N) scipy CSR graph: mesh edges weighted by length, plus edges from every vertex of each
    connected piece to its ``bridges`` nearest vertices of the pieces it is joined to: the pieces
    ``mesh.piece_links`` names (a rig's joints), else every other piece (:func:`_piece_partners`)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    v, n = mesh.vertices, mesh.n_vertices
    rows, cols = [mesh.faces.ravel()], [mesh.faces[:, [1, 2, 0]].ravel()]
    count, piece = connected_components(coo_matrix((np.ones(len(rows[0])), (rows[0], cols[0])), shape=(n, n)),
                                        directed=False)
    partners = _piece_partners(mesh.piece_links, piece, count) if count > 1 else np.zeros((1, 1), bool)
    for c in range(count if count > 1 else 0):
        inside, others = np.flatnonzero(piece == c), np.flatnonzero(partners[c][piece])
        if len(others) == 0:
            continue
        _, nearest = cKDTree(v[others]).query(v[inside], k=min(bridges, len(others)))
        nearest = others[np.asarray(nearest).reshape(len(inside), -1)]
        rows.append(np.repeat(inside, nearest.shape[1]))
        cols.append(nearest.ravel())
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.linalg.norm(v[rows] - v[cols], axis=1) + 1e-12, (rows, cols)), shape=(n, n)).tocsr()
    return graph.maximum(graph.T).tocsr()


def _piece_partners(links, piece: np.ndarray, count: int) -> np.ndarray:
    """(count, count) bool: which pieces each piece is bridged to. Without ``links`` (L, 2) vertex pairs,
    all others: the nearest then decide, which joins a robot's hanging forearm to the thigh beside it
    (its feet then matched the man's one foot). With them, the linked pieces; pieces the links leave
    apart from the largest group are bridged to everything outside their own group."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if links is None or len(links) == 0:
        return ~np.eye(count, dtype=bool)
    a, b = piece[np.asarray(links)[:, 0]], piece[np.asarray(links)[:, 1]]
    partners = np.zeros((count, count), bool)
    partners[a, b] = partners[b, a] = True
    np.fill_diagonal(partners, False)
    groups, group = connected_components(coo_matrix(partners), directed=False)
    if groups > 1:
        largest = np.argmax(np.bincount(group, weights=np.bincount(piece, minlength=count)))
        for g in range(groups):
            if g != largest:
                partners[np.ix_(group == g, group != g)] = True
    return partners


def rig_piece_links(mesh: Mesh, weights: np.ndarray, parents, share: float = 0.01) -> np.ndarray:
    """(L, 2) vertex id pairs for :attr:`sa3df.core.mesh.Mesh.piece_links`: two connected pieces of
    ``mesh`` are joined when a bone carrying ``share`` or more of one piece's skin is, or is the parent or a
    child of, such a bone of the other. ``weights`` (N, B) the mesh's skin weights (its vertices'
    rows), ``parents`` (B,) each bone's parent (-1 for a root). Bone names are never read."""
    piece = mesh.components()  # labels 0 .. P-1
    weights = np.asarray(weights, dtype=np.float64)
    parents = np.asarray(parents)
    _, first = np.unique(piece, return_index=True)
    if len(first) < 2:
        return np.zeros((0, 2), np.int64)
    load = np.zeros((len(first), weights.shape[1]))  # (P, B) each piece's skin per bone
    np.add.at(load, piece, weights)
    carries = load >= share * np.maximum(load.sum(1, keepdims=True), 1e-12)
    near = carries.copy()  # the bones of a piece, their parents and their children
    for bone in np.flatnonzero(parents >= 0):
        near[:, parents[bone]] |= carries[:, bone]
        near[:, bone] |= carries[:, parents[bone]]
    joined = (carries.astype(np.int64) @ near.T.astype(np.int64)) > 0
    i, j = np.nonzero(np.triu(joined | joined.T, 1))
    return np.stack([first[i], first[j]], axis=1).astype(np.int64)


def graph_distances(graph, sources, predecessors: bool = False, limit: float = np.inf):
    """(len(sources), N) shortest-path lengths on ``graph`` (and the predecessor arrays if asked)."""
    from scipy.sparse.csgraph import dijkstra

    return dijkstra(graph, directed=False, indices=np.asarray(sources, dtype=np.int64),
                    return_predecessors=predecessors, limit=limit)


TIE = 1e-5  # values this close (relative to the largest) are equal: the corners of a box must not be chosen by noise


def tie_proof_keys(values: np.ndarray, tie: float = TIE) -> np.ndarray:
    """(N,) int64 keys ordered as ``values`` (N,) rounded to steps of ``tie`` × the largest |value| (so 1e-8
    noise almost never separates equal values), the lower vertex id first among equals. A symmetric shape
    (a rigid box piece) has exactly tied corners; moved by 1e-8 (as a world transform moves them), raw
    values pick a different corner, and with it the extremities and the pairing (the robot's head matched
    the man's hand)."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    top = max(float(np.abs(values[finite]).max()) if finite.any() else 1.0, 1e-300)
    levels = np.round(np.clip(values, -2 * top, 2 * top) / (tie * top))  # an unreachable vertex stays farthest
    return levels.astype(np.int64) * len(values) + (len(values) - 1 - np.arange(len(values)))


def average_geodesic_distance(graph, samples: int = 32) -> np.ndarray:
    """(N,) mean graph distance of each vertex to ``samples`` farthest-point samples (an AGD estimate);
    the farthest point is taken among ties by :func:`tie_proof_keys`."""
    chosen = [int(np.argmax(tie_proof_keys(graph_distances(graph, [0])[0])))]
    columns = [graph_distances(graph, chosen)[0]]
    nearest = columns[0].copy()
    for _ in range(min(samples, graph.shape[0]) - 1):
        chosen.append(int(np.argmax(tie_proof_keys(nearest))))
        columns.append(graph_distances(graph, [chosen[-1]])[0])
        nearest = np.minimum(nearest, columns[-1])
    return np.mean(columns, axis=0)


def extremities(graph, agd: np.ndarray, max_count: int = MAX_EXTREMITIES, radius: float = 0.2,
                floor: float = 0.5) -> np.ndarray:
    """Vertex ids of the extremities, highest AGD first: vertices whose AGD is the highest within
    ``radius`` × the graph diameter around them, with AGD at least ``floor`` × the highest. AGD values
    compare by :func:`tie_proof_keys` (one corner of a box piece, the same one whatever the noise)."""
    key = tie_proof_keys(agd).astype(np.float64)  # exact: the keys stay below 2^53
    reach = graph_distances(graph, [int(np.argmax(key))])[0]
    scale = float(reach[np.isfinite(reach)].max())
    neighbour_key = graph.copy()
    neighbour_key.data = key[neighbour_key.indices]
    ring_max = np.maximum.reduceat(neighbour_key.data, neighbour_key.indptr[:-1])
    candidates = np.flatnonzero((agd >= floor * agd.max()) & (key >= ring_max))  # 1-ring maxima first
    maxima = []
    for start in range(0, len(candidates), 256):
        chunk = candidates[start:start + 256]
        near = graph_distances(graph, chunk, limit=radius * scale)
        maxima.append(chunk[key[chunk] >= np.where(np.isfinite(near), key, -np.inf).max(axis=1)])
    maxima = np.concatenate(maxima)
    return maxima[np.argsort(-key[maxima])][:max_count].astype(np.int64)


def shortest_path(predecessors: np.ndarray, start: int, end: int) -> list[int]:
    """The shortest path ``start`` ... ``end`` from a search started at ``start`` ([end] if unreached)."""
    path = [end]
    while path[-1] != start and predecessors[path[-1]] >= 0:
        path.append(int(predecessors[path[-1]]))
    return path[::-1]


def path_vertex(predecessors: np.ndarray, start: int, end: int, lengths: np.ndarray, fraction: float) -> int:
    """The vertex on the shortest path ``start`` -> ``end`` (``predecessors`` and ``lengths`` of a search
    from ``start``) whose distance from ``start`` is nearest ``fraction`` of the path's length."""
    path = np.asarray(shortest_path(predecessors, start, end))
    return int(path[np.argmin(np.abs(lengths[path] - fraction * lengths[end]))])


def feet_direction(mesh: Mesh, graph, ids: np.ndarray, centre: int, up: np.ndarray) -> np.ndarray:
    """(3,) the horizontal way the lowest extremities (feet) stick out of their legs, as a unit vector
    scaled by how much the feet agree (0 when they do not: hooves, or one foot). Each foot's offset
    from a point 20 % up its leg is taken less its part along the leg (20 % -> 50 %), so a leg swung
    back in a stride still points its toes forward."""
    heights = mesh.vertices[ids] @ up
    low = ids[heights - heights.min() < 0.2 * np.ptp(mesh.vertices @ up)]
    lengths, predecessors = graph_distances(graph, low, predecessors=True)
    directions = []
    for k, foot in enumerate(low):
        ankle, knee = (mesh.vertices[path_vertex(predecessors[k], int(foot), centre, lengths[k], f)] for f in (0.2, 0.5))
        leg = (knee - ankle) / max(np.linalg.norm(knee - ankle), 1e-12)
        out = mesh.vertices[foot] - ankle
        out = out - (out @ leg) * leg
        out = out - (out @ up) * up
        directions.append(out / max(np.linalg.norm(out), 1e-12))
    mean = np.mean(directions, axis=0)
    agreement = float(np.linalg.norm(mean))
    return mean / max(agreement, 1e-12) * np.clip((agreement - FACING_DOUBT) / (1 - FACING_DOUBT), 0.0, 1.0)


@dataclass
class MeshLandmarks:
    """One mesh's extremities. ``ids`` (K,) vertex ids; ``between`` (K, K) graph distances between them
    and ``agd`` (K,) their AGD, both divided by ``scale`` (the mean AGD, a pose-invariant size);
    ``points`` (N, 3) every vertex relative to the body centre (the AGD minimum) divided by ``scale``;
    ``graph`` the surface graph; ``centre`` the AGD minimum's vertex id."""

    ids: np.ndarray
    between: np.ndarray
    agd: np.ndarray
    points: np.ndarray
    scale: float
    graph: object
    centre: int
    mesh: Mesh

    def facing(self, up: np.ndarray | None) -> np.ndarray:
        """(3,) :func:`feet_direction` about ``up`` (zero without one)."""
        return np.zeros(3) if up is None else feet_direction(self.mesh, self.graph, self.ids, self.centre, up)


def mesh_landmarks(mesh: Mesh) -> MeshLandmarks:
    """The extremities of ``mesh`` and what :func:`sa3df.apps.landmark_pairing.pair_landmarks` compares."""
    graph = surface_graph(mesh)
    agd = average_geodesic_distance(graph)
    ids = extremities(graph, agd)
    if len(ids) < 2:
        raise ValueError(f"Mesh '{mesh.name}' has fewer than two extremities to match by")
    scale = float(agd.mean())
    centre = int(np.argmin(agd))
    between = graph_distances(graph, ids)[:, ids] / scale
    points = (mesh.vertices - mesh.vertices[centre]) / scale
    return MeshLandmarks(ids, between, agd[ids] / scale, points, scale, graph, centre, mesh)


def landmark_descriptors(landmarks: MeshLandmarks, chosen: np.ndarray) -> np.ndarray:
    """(N, M) graph distance of every vertex to the extremities ``chosen`` (M,) (indices into
    ``landmarks.ids``), each column divided by that extremity's mean distance to the other chosen ones."""
    ids = landmarks.ids[chosen]
    spread = landmarks.between[np.ix_(chosen, chosen)].sum(axis=1) / max(len(chosen) - 1, 1) * landmarks.scale
    return (graph_distances(landmarks.graph, ids).T / spread).astype(np.float32)


def up_vector(up: str | None) -> np.ndarray | None:
    """The unit vector of axis name ``up`` ("x", "y", "z"), or None."""
    if up is None:
        return None
    if up not in AXES:
        raise ValueError(f"up axis must be one of x, y, z, not '{up}'")
    return np.eye(3)[AXES[up]]


DESCRIPTOR_SIGMA = 0.2  # descriptor distance at which the bonus falls to e^-1/2 of its top
POSITION_SIGMA = 0.02  # the same for positions, as a fraction of the box diagonal


def landmark_prior(source_mesh: Mesh, target_mesh: Mesh, weight: float = LANDMARK_PRIOR, up: str | None = None,
                   features: tuple | None = None, device: str | None = None):
    """The matching bonus for ``target_mesh`` (queries) against ``source_mesh`` (references), a
    :class:`sa3df.apps.match.ProximitySum` of two :class:`sa3df.apps.match.RestProximity` terms of
    ``weight`` each: alike landmark descriptors (:func:`landmark_descriptors` of the paired
    extremities) and the same place in the box-normalised shapes once the target is turned by the
    pairing. ``up`` ("x", "y", "z") lets the turn be about that axis and the feet tell front from back;
    without it each axis is tried and the best-scoring pairing kept. With ``features`` (the source's
    (Ns, E) and the target's (Nt, E) features that will be matched) the place term's target points are
    first bent onto the source (:func:`sa3df.apps.align.aligned_places`), so the same place means the
    same part across proportions and poses. Raises ``ValueError`` for ``weight`` < 0."""
    from sa3df.apps.landmark_pairing import pair_landmarks  # it builds on this module's MeshLandmarks
    from sa3df.apps.match import ProximitySum, RestProximity

    if weight < 0:
        raise ValueError(f"the landmark prior's weight must be 0 or more, got {weight}")
    source, target = mesh_landmarks(source_mesh), mesh_landmarks(target_mesh)
    pairing = min((pair_landmarks(source, target, up_vector(axis)) for axis in ([up] if up else list(AXES))),
                  key=lambda p: p.cost)
    descriptors = RestProximity(landmark_descriptors(target, pairing.pairs[:, 1]),
                                landmark_descriptors(source, pairing.pairs[:, 0]),
                                weight=weight, sigma=DESCRIPTOR_SIGMA, box_normalize=False)
    places = RestProximity(target_mesh.vertices @ pairing.rotation.T, source_mesh.vertices, weight=weight,
                           sigma=POSITION_SIGMA)
    if features is not None and weight > 0:
        from sa3df.apps.align import aligned_places

        places.query_points = aligned_places(*features, [descriptors, places], 1, target.graph, device=device)
    return ProximitySum([descriptors, places])
