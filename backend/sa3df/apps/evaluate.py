"""Scoring a correspondence: geodesic error, accuracy curves, and the left/right flip rate.

Conventions (shared by the CLI's ``eval`` command and the tests):

- **Error** of a prediction = geodesic distance on the *target* mesh between the predicted and the
  true target vertex, divided by √(surface area) of the target (scale-free; the usual convention of
  shape-correspondence benchmarks).
- **Across components** the geodesic distance is infinite. Such an error is reported as the target's
  normalised geodesic *diameter* (the largest finite distance found by a double sweep from the first
  true vertex and by all solves of the evaluation): as wrong as a prediction on the mesh can be, and
  still finite, so means and AUCs stay defined.
- **Accuracy curve**: share of predictions with error ≤ threshold, thresholds 0…0.25 by default.
  **AUC** is the area under it divided by the threshold range, so it lies in [0, 1].
- **Flip rate**: among points whose true match and mirrored match lie at least ``min_separation``
  (normalised geodesic, default 0.1) apart, the share of predictions strictly closer to the mirrored
  match than to the true one. Points near the symmetry plane are left out: there a "flip" is not
  distinguishable from a small error.
- **Seams**: vertices at the same position (files split them at UV seams and sharp edges) are welded
  before geodesics are computed, so the surface is measured as one piece.
- **Mirrored ground truth** (for a shape's left/right symmetry): reflect the vertices across the plane
  through the bounding-box centre normal to the sagittal axis and take the nearest vertex.
- **Regions** (between different characters, where no vertex corresponds to a vertex): each vertex carries
  a body-region label (e.g. from its dominant skin bone; -1 = none). **Region accuracy** is the share of
  target vertices whose match lies in the same region; only target vertices whose region the source has
  count. **Swap rate** is, among those on a sided region (``mirror[r] != r``), the share whose match lies
  in the mirror region (left hand matched to the right hand). A wrong match is **on a blend** where the
  skin weights blend the two regions: the target vertex carries at least :data:`BLEND_SHARE` of its weight
  in the region it was matched to, or its match at least that much in the target vertex's region (a
  joint's skin, where a hard label cannot be right for both rigs).
"""

from __future__ import annotations

import numpy as np

from sa3df.core.geodesics import GeodesicSolver
from sa3df.core.mesh import Mesh
from sa3df.core.progress import ProgressFn, steps

DEFAULT_THRESHOLDS = np.linspace(0.0, 0.25, 101)
BLEND_SHARE = 0.3  # a region with this much of a vertex's skin weight is one of its regions (blend_scores)


def _reflect(vertices: np.ndarray, axis: int) -> np.ndarray:
    centre = (vertices[:, axis].min() + vertices[:, axis].max()) / 2
    mirrored = vertices.copy()
    mirrored[:, axis] = 2 * centre - vertices[:, axis]
    return mirrored


def symmetry_axis(vertices: np.ndarray, candidates=None) -> tuple[int, np.ndarray]:
    """The coordinate axis the shape is most mirror-symmetric about, and the mean nearest-vertex
    distance (divided by the bounding-box diagonal) after reflecting about each candidate axis."""
    from scipy.spatial import cKDTree

    v = np.asarray(vertices, dtype=np.float64)
    candidates = list(range(3)) if candidates is None else list(candidates)
    tree = cKDTree(v)
    diagonal = float(np.linalg.norm(np.ptp(v, axis=0))) or 1.0
    scores = np.array([tree.query(_reflect(v, a))[0].mean() / diagonal for a in candidates])
    return candidates[int(np.argmin(scores))], scores


def mirrored_ground_truth(vertices, faces=None, axis: int | None = None) -> np.ndarray:
    """(N,) int64: for each vertex, the vertex nearest to its mirror image across the symmetry plane.

    ``vertices`` (N, 3) rest pose; the plane passes through the bounding-box centre, normal to
    ``axis`` (0/1/2; auto-detected with :func:`symmetry_axis` when None). With ``faces`` only
    vertices used by some face can be chosen (loose vertices are not surface points).
    """
    from scipy.spatial import cKDTree

    v = np.asarray(vertices, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0:
        raise ValueError(f"vertices must be a non-empty (N, 3) array, got shape {v.shape}")
    if axis is None:
        axis = symmetry_axis(v)[0]
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2 (x, y, z), got {axis}")
    candidates = np.arange(len(v)) if faces is None else np.unique(np.asarray(faces))
    tree = cKDTree(v[candidates])
    return candidates[tree.query(_reflect(v, axis))[1]].astype(np.int64)


def weld_coincident(mesh: Mesh, tolerance: float = 1e-7) -> tuple[Mesh, np.ndarray]:
    """Merge vertices closer than ``tolerance`` × bounding-box diagonal (files split vertices at UV
    seams and sharp edges, which cuts the surface into pieces). Returns (welded mesh, (N,) int64
    welded id of each vertex)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    from sa3df.core.mesh import from_arrays

    v = mesh.vertices
    radius = tolerance * float(np.linalg.norm(np.ptp(v, axis=0)))
    pairs = cKDTree(v).query_pairs(radius, output_type="ndarray") if radius > 0 else np.zeros((0, 2), int)
    if len(pairs) == 0:
        return mesh, np.arange(mesh.n_vertices)
    n = mesh.n_vertices
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, group = connected_components(graph, directed=False)
    first = np.full(group.max() + 1, n)
    np.minimum.at(first, group, np.arange(n))  # each group is represented by its first vertex
    welded = from_arrays(v[first], group[mesh.faces], name=f"{mesh.name} (welded)")
    return welded, group.astype(np.int64)


class _GeodesicTable:
    """Geodesic distances from chosen source vertices, one heat solve per unique (welded) source.

    Without a caller's ``solver``, coincident vertices are welded first, so a prediction on the
    other copy of a seam vertex has error 0 and the surface is not cut at seams.
    """

    def __init__(self, mesh: Mesh, solver: GeodesicSolver | None):
        if solver is None:
            surface, self.key = weld_coincident(mesh)
            solver = GeodesicSolver(surface)
        else:
            surface, self.key = solver.mesh, np.arange(mesh.n_vertices)
            if surface.n_vertices != mesh.n_vertices:
                raise ValueError(f"the solver was built for a mesh with {surface.n_vertices} vertices, "
                                 f"mesh '{mesh.name}' has {mesh.n_vertices}")
        self.solver = solver
        self.scale = float(np.sqrt(surface.surface_area()))
        self.largest_finite = 0.0

    def between(self, sources: np.ndarray, *queries: np.ndarray, progress: ProgressFn | None = None):
        """Geodesic distance from ``sources[m]`` to ``q[m]`` for each query array ``q`` (M,), one heat
        solve per unique source shared by all of them. Returns one (M,) array per query array
        (a single array when one was given); ``inf`` across components."""
        outs = [np.empty(len(sources)) for _ in queries]
        unique, inverse = np.unique(self.key[sources], return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.searchsorted(inverse[order], np.arange(len(unique) + 1))
        for u in steps(range(len(unique)), len(unique), progress, "geodesic errors"):
            column = self.solver.distances_from(int(unique[u]))
            self.largest_finite = max(self.largest_finite, float(column[np.isfinite(column)].max()))
            rows = order[bounds[u]:bounds[u + 1]]
            for out, q in zip(outs, queries):
                out[rows] = column[self.key[q[rows]]]
        return outs[0] if len(outs) == 1 else outs

    def diameter(self, start: int) -> float:
        """Largest finite geodesic distance known: a double sweep from ``start`` and all solves so far."""
        first = self.solver.distances_from(int(self.key[start]))
        far = int(np.argmax(np.where(np.isfinite(first), first, -1.0)))
        second = self.solver.distances_from(far)
        sweep = float(second[np.isfinite(second)].max())
        return max(self.largest_finite, sweep, float(first[np.isfinite(first)].max()))

    def normalised(self, distances: np.ndarray, start: int) -> np.ndarray:
        distances = np.asarray(distances, dtype=np.float64)
        if np.isinf(distances).any():
            distances = np.where(np.isinf(distances), self.diameter(start), distances)
        return distances / self.scale


def _check_ids(mesh: Mesh, name: str, ids) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"{name} must be a 1-D integer array of vertex ids, got {ids.dtype} {ids.shape}")
    if len(ids) and (ids.min() < 0 or ids.max() >= mesh.n_vertices):
        raise ValueError(f"{name} must lie in [0, {mesh.n_vertices - 1}] for mesh '{mesh.name}', "
                         f"found {ids.min()}..{ids.max()}")
    return ids.astype(np.int64)


def geodesic_errors(target_mesh: Mesh, predicted_ids, true_ids, solver: GeodesicSolver | None = None,
                    progress: ProgressFn | None = None) -> np.ndarray:
    """(M,) float64 normalised geodesic errors between ``predicted_ids`` (M,) and ``true_ids`` (M,)
    target vertices: distance / √(target surface area); across components, the normalised diameter.

    One heat solve per unique true id. Coincident vertices (split at UV seams by many files) are
    welded for the geodesics; a prepared ``solver`` (built on ``target_mesh`` itself, no welding)
    reuses its factorisation.
    """
    predicted = _check_ids(target_mesh, "predicted_ids", predicted_ids)
    true = _check_ids(target_mesh, "true_ids", true_ids)
    if len(predicted) != len(true):
        raise ValueError(f"predicted_ids ({len(predicted)}) and true_ids ({len(true)}) differ in length")
    if len(true) == 0:
        return np.zeros(0)
    table = _GeodesicTable(target_mesh, solver)
    return table.normalised(table.between(true, predicted, progress=progress), int(true[0]))


def accuracy_curve(errors, thresholds=None) -> tuple[np.ndarray, np.ndarray]:
    """Share of ``errors`` ≤ each threshold. Returns (thresholds (T,), accuracy (T,) in [0, 1])."""
    errors = np.asarray(errors, dtype=np.float64).ravel()
    thresholds = DEFAULT_THRESHOLDS if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    if len(errors) == 0:
        raise ValueError("accuracy_curve needs at least one error")
    sorted_errors = np.sort(errors)
    accuracy = np.searchsorted(sorted_errors, thresholds, side="right") / len(errors)
    return thresholds, accuracy


def auc(thresholds, accuracy) -> float:
    """Area under the accuracy curve divided by the threshold range (1 = every error is 0)."""
    t, a = np.asarray(thresholds, dtype=np.float64), np.asarray(accuracy, dtype=np.float64)
    if len(t) < 2 or t[-1] <= t[0]:
        raise ValueError("auc needs at least two increasing thresholds")
    return float(np.sum((a[1:] + a[:-1]) * np.diff(t)) / 2 / (t[-1] - t[0]))


def flip_rate(target_mesh: Mesh, predicted_ids, true_ids, mirrored_true_ids, min_separation: float = 0.1,
              solver: GeodesicSolver | None = None, progress: ProgressFn | None = None) -> float:
    """Share of predictions geodesically closer to the mirrored match than to the true match.

    Only points whose true and mirrored matches are at least ``min_separation`` (distance / √area)
    apart count; returns ``nan`` when none does (e.g. a shape with no left/right parts).
    """
    return _flip_stats(_GeodesicTable(target_mesh, solver), target_mesh, predicted_ids, true_ids,
                       mirrored_true_ids, min_separation, progress)[0]


def _flip_stats(table: _GeodesicTable, mesh: Mesh, predicted_ids, true_ids, mirrored_ids,
                min_separation: float, progress=None, to_true: np.ndarray | None = None):
    predicted = _check_ids(mesh, "predicted_ids", predicted_ids)
    true = _check_ids(mesh, "true_ids", true_ids)
    mirrored = _check_ids(mesh, "mirrored_true_ids", mirrored_ids)
    if not len(predicted) == len(true) == len(mirrored):
        raise ValueError("predicted_ids, true_ids and mirrored_true_ids must have the same length")
    if to_true is None:
        to_true = table.between(true, predicted, progress=progress)
    to_mirror, separation = table.between(mirrored, predicted, true, progress=progress)
    counted = (separation / table.scale) >= min_separation
    if not counted.any():
        return float("nan"), 0
    flipped = to_mirror[counted] < to_true[counted]
    return float(flipped.mean()), int(counted.sum())


def evaluate_correspondence(target_mesh: Mesh, predicted_ids, true_ids, mirrored_true_ids=None,
                            thresholds=None, min_separation: float = 0.1, max_points: int | None = None,
                            seed: int = 0, solver: GeodesicSolver | None = None,
                            progress: ProgressFn | None = None) -> dict:
    """All correspondence scores in one dict (plain floats, ready for JSON).

    Keys: ``count``, ``mean_error``, ``median_error``, ``auc``, ``acc@0.01``, ``acc@0.05``,
    ``acc@0.1``, ``acc@0.25``; with ``mirrored_true_ids`` also ``flip_rate`` and ``flip_count`` (the
    points that counted). ``predicted_ids``/``true_ids`` (M,) are target vertex ids. Each unique true
    (and mirrored) id costs one heat solve, so with ``max_points`` only a seeded random subset of
    that many pairs is scored (the Diff3F protocol used 1,024).
    """
    table = _GeodesicTable(target_mesh, solver)
    predicted = _check_ids(target_mesh, "predicted_ids", predicted_ids)
    true = _check_ids(target_mesh, "true_ids", true_ids)
    if len(predicted) != len(true) or len(true) == 0:
        raise ValueError(f"need equally many predicted ({len(predicted)}) and true ({len(true)}) ids, at least 1")
    chosen = np.arange(len(true))
    if max_points is not None and len(true) > max_points:
        chosen = np.sort(np.random.default_rng(seed).choice(len(true), int(max_points), replace=False))
    predicted, true = predicted[chosen], true[chosen]
    if mirrored_true_ids is not None:
        if len(mirrored_true_ids) != len(true_ids):
            raise ValueError(f"mirrored_true_ids ({len(mirrored_true_ids)}) and true_ids ({len(true_ids)}) "
                             "differ in length")
        mirrored_true_ids = np.asarray(mirrored_true_ids)[chosen]
    sub = (lambda f, m="": progress(0.5 * f, m)) if progress and mirrored_true_ids is not None else progress
    raw = table.between(true, predicted, progress=sub)
    errors = table.normalised(raw, int(true[0]))
    t, acc = accuracy_curve(errors, thresholds)
    scores = {
        "count": int(len(errors)), "mean_error": float(errors.mean()),
        "median_error": float(np.median(errors)), "auc": auc(t, acc),
    }
    for level in (0.01, 0.05, 0.1, 0.25):
        scores[f"acc@{level}"] = float((errors <= level).mean())
    if mirrored_true_ids is not None:
        rest = (lambda f, m="": progress(0.5 + 0.5 * f, m)) if progress else None
        rate, counted = _flip_stats(table, target_mesh, predicted, true, mirrored_true_ids, min_separation,
                                    rest, to_true=raw)
        scores["flip_rate"], scores["flip_count"] = rate, counted
    return scores


def _region_arrays(source_regions, target_regions, mirror, n_source: int | None = None):
    source = np.asarray(source_regions)
    target = np.asarray(target_regions)
    mirror = np.asarray(mirror)
    for name, labels in (("source_regions", source), ("target_regions", target)):
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"{name} must be a 1-D integer array of region ids, got {labels.dtype} {labels.shape}")
        if len(labels) and labels.max() >= len(mirror):
            raise ValueError(f"{name} has region {labels.max()} but the mirror table has {len(mirror)} regions")
    if mirror.ndim != 1 or (len(mirror) and (mirror.min() < 0 or mirror.max() >= len(mirror))):
        raise ValueError(f"mirror must be a (R,) table of region ids in [0, R), got {mirror}")
    if n_source is not None and n_source != len(source):
        raise ValueError(f"source_regions has {len(source)} entries for a map into {n_source} source vertices")
    return source, target, mirror


def _counted_targets(source: np.ndarray, target: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    """(Nt,) bool: the target vertices the region scores count, those in a region the source has."""
    present = np.zeros(len(mirror), dtype=bool)
    present[source[source >= 0]] = True
    return (target >= 0) & present[np.maximum(target, 0)]


def region_scores(target_to_source, source_regions, target_regions, mirror) -> dict:
    """Region accuracy and left/right swap rate of a map between two characters (see the module notes).

    ``target_to_source`` (Nt,) source vertex per target vertex; ``source_regions`` (Ns,) and
    ``target_regions`` (Nt,) region ids (-1: unlabelled, not counted); ``mirror`` (R,) the region on the
    other side of each region (itself for a central one). Returns plain floats: ``accuracy``,
    ``swap_rate`` (nan without sided regions), ``count`` and ``sided_count`` (the vertices they count).
    """
    t2s = np.asarray(target_to_source)
    source, target, mirror = _region_arrays(source_regions, target_regions, mirror)
    if t2s.shape != target.shape:
        raise ValueError(f"target_to_source {t2s.shape} and target_regions {target.shape} differ in shape")
    if not np.issubdtype(t2s.dtype, np.integer) or (len(t2s) and (t2s.min() < 0 or t2s.max() >= len(source))):
        raise ValueError(f"target_to_source must hold source vertex ids in [0, {len(source) - 1}]")
    counted = _counted_targets(source, target, mirror)
    if not counted.any():
        raise ValueError("no target vertex lies in a region the source has: nothing to score")
    matched, truth = source[t2s[counted]], target[counted]
    sided = mirror[truth] != truth
    swapped = matched[sided] == mirror[truth[sided]]
    return {"accuracy": float((matched == truth).mean()),
            "swap_rate": float(swapped.mean()) if sided.any() else float("nan"),
            "count": int(counted.sum()), "sided_count": int(sided.sum())}


def blend_scores(target_to_source, source_regions, target_regions, mirror, source_weights, target_weights,
                 share: float = BLEND_SHARE) -> dict:
    """How much of a map's region error lies on blended skin (see the module notes).

    Arguments as :func:`region_scores`, plus ``source_weights`` (Ns, R) and ``target_weights`` (Nt, R):
    each vertex's skin weight per region (rows summing to 1; all zero where unweighted). Returns plain
    floats: ``blended`` the share of the wrong (counted) matches that are on a blend (nan when none is
    wrong) and ``blend_accuracy`` the region accuracy with those counted as right."""
    t2s = np.asarray(target_to_source)
    source, target, mirror = _region_arrays(source_regions, target_regions, mirror)
    region_scores(t2s, source, target, mirror)  # the same checks of the map
    source_weights, target_weights = np.asarray(source_weights), np.asarray(target_weights)
    if source_weights.shape != (len(source), len(mirror)) or target_weights.shape != (len(target), len(mirror)):
        raise ValueError(f"weights must be (vertices, {len(mirror)} regions): got {source_weights.shape} for "
                         f"{len(source)} source and {target_weights.shape} for {len(target)} target vertices")
    counted = np.flatnonzero(_counted_targets(source, target, mirror))
    matched, truth = source[t2s[counted]], target[counted]
    wrong = matched != truth
    on_blend = wrong & (matched >= 0) & (
        (target_weights[counted, np.maximum(matched, 0)] >= share) | (source_weights[t2s[counted], truth] >= share))
    return {"blended": float(on_blend.sum() / wrong.sum()) if wrong.any() else float("nan"),
            "blend_accuracy": float(1.0 - (wrong & ~on_blend).mean())}


def part_agreement(source_parts, target_parts, source_regions, target_regions, mirror) -> dict:
    """How consistently parts (e.g. one joint k-means over both meshes) cover the same body regions.

    Each region of the source votes for the part most of its vertices got; ``agreement`` is the share of
    (counted) target vertices whose part is the one their region got on the source. ``sides_apart`` is
    the share of left/right region pairs whose parts differ on *both* meshes (1: no part spans both legs);
    ``parts_used`` the number of distinct parts on each mesh.
    """
    source, target, mirror = _region_arrays(source_regions, target_regions, mirror)
    s_parts, t_parts = np.asarray(source_parts), np.asarray(target_parts)
    if s_parts.shape != source.shape or t_parts.shape != target.shape:
        raise ValueError("parts and regions must have one entry per vertex on each mesh")

    def majority(parts, regions):
        out = np.full(len(mirror), -1)
        for r in np.unique(regions[regions >= 0]):
            values, counts = np.unique(parts[regions == r], return_counts=True)
            out[r] = values[np.argmax(counts)]
        return out

    s_major, t_major = majority(s_parts, source), majority(t_parts, target)
    counted = (target >= 0) & (s_major[np.maximum(target, 0)] >= 0)
    agreement = float((t_parts[counted] == s_major[target[counted]]).mean()) if counted.any() else float("nan")
    left = [r for r in range(len(mirror)) if mirror[r] > r and min(s_major[r], s_major[mirror[r]],
                                                                    t_major[r], t_major[mirror[r]]) >= 0]
    apart = [s_major[r] != s_major[mirror[r]] and t_major[r] != t_major[mirror[r]] for r in left]
    return {"agreement": agreement, "sides_apart": float(np.mean(apart)) if apart else float("nan"),
            "parts_used": (int(len(np.unique(s_parts))), int(len(np.unique(t_parts))))}
