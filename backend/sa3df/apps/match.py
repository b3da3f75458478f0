"""Dense correspondence between two meshes by nearest neighbours in feature space.

The method maps each target vertex to the source vertex with the most similar feature (cosine).
A full Ns×Nt similarity matrix does not fit for large meshes (30k × 30k float32 = 3.6 GB), so the
query rows are processed in chunks whose size comes from a memory budget; only the running best
per row is kept. On CUDA the matrix products run in float16 and the winners' similarities are
recomputed in float32, so reported similarities do not depend on the device.

A :class:`RestProximity` prior can add a bounded bonus for candidates that sit at the same place once
both meshes' bounding boxes are normalised: for two characters in their rest (bind) poses this keeps
small extremities (hands, feet) from matching the larger limb next to them, which per-mesh features
trained without any cross-mesh term tend to do.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from sa3df.apps.landmarks import LANDMARK_PRIOR
from sa3df.core.device import choose_device
from sa3df.core.mesh import Mesh
from sa3df.core.orient import box_normalized
from sa3df.core.progress import ProgressFn, report

DEFAULT_BUDGET_BYTES = 64 * 2**20  # similarity chunk: 64 MB (≈ 1,600 rows against 10k references)
# Exponents are floored here before exp: e^-80 ≈ 2e-35 is still a normal float32, and a CPU computes
# the subnormal results of lower exponents about ten times slower (3000² far-apart pairs: 0.26 s vs 0.02 s).
EXP_FLOOR = -80.0


def _as_features(array, name: str) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(array) if not torch.is_tensor(array) else array)
    if tensor.ndim != 2 or tensor.shape[0] == 0 or tensor.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty (N, E) feature array, got shape {tuple(tensor.shape)}")
    tensor = tensor.detach().to("cpu", torch.float32)  # inputs live on the CPU; chunks go to the device
    if not torch.isfinite(tensor).all():
        bad = int((~torch.isfinite(tensor).all(dim=1)).sum())
        raise ValueError(f"{name} has {bad} rows with non-finite values")
    return tensor


def _unit_rows(features: torch.Tensor) -> torch.Tensor:
    """L2-normalise rows; an all-zero row stays zero (similarity 0 to everything)."""
    return features / features.norm(dim=1, keepdim=True).clamp_min(1e-12)


def auto_chunk_size(n_reference: int, k: int = 1, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> int:
    """Query rows per chunk so the float32 similarity block (+ top-k buffers) stays within ``budget_bytes``."""
    per_row = 4 * n_reference + 12 * k
    return int(max(1, min(65536, budget_bytes // max(per_row, 1))))


@dataclass
class RestProximity:
    """A spatial prior for matching meshes posed alike (e.g. two characters at rest, facing alike).

    The score of query q against reference r becomes cos(f_q, f_r) + ``weight`` · exp(−d² / 2σ²), d the
    distance between their box-normalised positions (:func:`sa3df.core.orient.box_normalized`;
    σ = ``sigma``, a fraction of the box diagonal). The bonus is bounded, so far-apart candidates are still decided by the features
    alone: it only breaks ties between neighbouring parts. ``query_points`` and ``reference_points``
    are (Nq, 3) and (Nr, 3) positions in a common orientation.

    Measured (bench/bench_rest_prior.py: quaternius man -> woman at rest, geometric features, 300
    test-time steps): the woman's vertices matched to a vertex of their own bone 0.805 -> 0.911, on the
    forearms and hands 0.438 -> 0.792. Weights 0.1-0.5 and σ 0.02-0.04 all gave 0.91 ± 0.01 overall.
    """

    query_points: np.ndarray
    reference_points: np.ndarray
    weight: float = 0.2
    sigma: float = 0.03
    box_normalize: bool = True  # False: the points are descriptors (any width) already in one frame

    def __post_init__(self):
        if self.box_normalize:
            self.query_points = box_normalized(self.query_points).astype(np.float32)
            self.reference_points = box_normalized(self.reference_points).astype(np.float32)
        else:
            self.query_points = np.asarray(self.query_points, dtype=np.float32)
            self.reference_points = np.asarray(self.reference_points, dtype=np.float32)
        if self.weight < 0 or self.sigma <= 0:
            raise ValueError(f"RestProximity needs weight >= 0 and sigma > 0, got {self.weight}, {self.sigma}")

    def swapped(self) -> "RestProximity":
        """The same prior for matching the other way round."""
        other = copy.copy(self)  # the points are normalised already
        other.query_points, other.reference_points = self.reference_points, self.query_points
        return other

    def among_references(self, rows) -> "RestProximity":
        """The same prior against a subset of the reference points (kept in the whole set's frame)."""
        other = copy.copy(self)
        other.reference_points = self.reference_points[rows]
        return other

    def pair_bonus(self, indices: np.ndarray) -> np.ndarray:
        """(Nq, k) bonus of every query row against its reference rows ``indices`` (Nq, k): to blend or
        vote k neighbours by the same score they were ranked by."""
        offsets = self.query_points[:, None, :] - self.reference_points[np.asarray(indices)]
        return self.weight * np.exp((offsets**2).sum(-1) / (-2.0 * self.sigma**2))

    def add_bonus(self, block: torch.Tensor, rows: slice) -> torch.Tensor:
        """Add the bonus of the query rows ``rows`` against every reference point to ``block`` (rows, Nr)
        float32, in place, with one extra block of memory. The exponent −|q − r|² / 2σ² comes out of one
        matrix product of the points augmented as [q, |q|², 1] and [2r, −1, −|r|²]: four passes over the
        block instead of nine (the alignment's rounds spend most of their time here)."""
        q = torch.as_tensor(self.query_points[rows], device=block.device, dtype=torch.float32)
        r = torch.as_tensor(self.reference_points, device=block.device, dtype=torch.float32)
        ones_q, ones_r = q.new_ones(len(q), 1), r.new_ones(len(r), 1)
        queries = torch.cat([q, q.square().sum(1, keepdim=True), ones_q], dim=1) * (0.5 / self.sigma**2)
        references = torch.cat([2.0 * r, -ones_r, -r.square().sum(1, keepdim=True)], dim=1)
        exponent = (queries @ references.T).clamp_(EXP_FLOOR, 0.0).exp_()
        return block.add_(exponent, alpha=self.weight)


@dataclass
class ProximitySum:
    """Several bounded bonuses (:class:`RestProximity` terms) added to the similarity; used wherever a
    single one is (``proximity=`` of the matchers, weight transfer and label transfer)."""

    terms: list

    @property
    def query_points(self) -> np.ndarray:
        return self.terms[0].query_points

    @property
    def reference_points(self) -> np.ndarray:
        return self.terms[0].reference_points

    def swapped(self) -> "ProximitySum":
        return ProximitySum([t.swapped() for t in self.terms])

    def among_references(self, rows) -> "ProximitySum":
        return ProximitySum([t.among_references(rows) for t in self.terms])

    def pair_bonus(self, indices: np.ndarray) -> np.ndarray:
        return sum(t.pair_bonus(indices) for t in self.terms)

    def add_bonus(self, block: torch.Tensor, rows: slice) -> torch.Tensor:
        for term in self.terms:
            block = term.add_bonus(block, rows)
        return block


def matching_prior(source_mesh: Mesh, target_mesh: Mesh, rest_prior: float = 0.0,
                   landmark_prior: float = LANDMARK_PRIOR, up: str | None = None, features: tuple | None = None,
                   device: str | None = None):
    """The bonus every matcher adds for ``target_mesh`` (queries) against ``source_mesh``: the landmark
    prior of :func:`sa3df.apps.landmarks.landmark_prior` (weight ``landmark_prior``, 0: off; the default
    between two different shapes, posed alike or not) plus the :class:`RestProximity` of weight
    ``rest_prior`` (0: off; for shapes posed alike). None when both are off. ``up`` ("x", "y", "z")
    is the meshes' up axis (for turning the target to face like the source). ``features`` (source
    (Ns, E), target (Nt, E)), the features the prior will be used with, turn on the landmark prior's
    alignment (:mod:`sa3df.apps.align`, the default wherever sa3df matches two meshes)."""
    terms = []
    if landmark_prior:
        from sa3df.apps.landmarks import landmark_prior as landmark_terms

        terms += landmark_terms(source_mesh, target_mesh, weight=landmark_prior, up=up, features=features,
                                device=device).terms
    rest = rest_proximity(source_mesh, target_mesh, rest_prior, up)
    terms += [rest] if rest is not None else []
    return ProximitySum(terms) if terms else None


def rest_proximity(source_mesh: Mesh, target_mesh: Mesh, weight: float, up: str | None = None,
                   ) -> RestProximity | None:
    """The :class:`RestProximity` prior of ``weight`` for matching ``target_mesh`` (queries) to ``source_mesh``
    (None when ``weight`` is 0). With ``up`` ("x", "y", "z") the target is first turned about it to face
    like the source (:func:`sa3df.core.orient.yaw_to_match`), as the features were."""
    if weight == 0:
        return None
    target = target_mesh.vertices
    if up:
        from sa3df.core.orient import yaw_to_match

        target = target @ yaw_to_match(source_mesh.vertices, target, up).T
    return RestProximity(target, source_mesh.vertices, weight=weight)


def k_nearest_neighbors(
    query, reference, k: int = 1, chunk_size: int | None = None, device: str | None = None,
    progress: ProgressFn | None = None, compute_dtype: torch.dtype | None = None,
    proximity: RestProximity | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most cosine-similar reference rows for every query row.

    ``query`` (Nq, E) and ``reference`` (Nr, E), numpy or torch, any float dtype. Returns
    ``indices`` (Nq, k) int64 into ``reference`` and ``similarity`` (Nq, k) float32 in [-1, 1],
    best first. ``chunk_size`` query rows are compared at a time (default: from a 64 MB budget);
    ``device`` is "auto"/"cpu"/"cuda"/… (default auto). ``compute_dtype`` of the chunk products
    defaults to float16 on CUDA and float32 elsewhere; similarities are always exact float32.
    ``proximity`` ranks by cosine + its spatial bonus instead (the returned similarity stays the cosine).
    """
    q = _as_features(query, "query features")
    r = _as_features(reference, "reference features")
    if q.shape[1] != r.shape[1]:
        raise ValueError(f"query features have {q.shape[1]} dims but reference features have {r.shape[1]}")
    k = int(k)
    if not 1 <= k <= r.shape[0]:
        raise ValueError(f"k={k} must lie in [1, {r.shape[0]}] (the number of reference rows)")
    if proximity is not None and (len(proximity.query_points), len(proximity.reference_points)) != (len(q), len(r)):
        raise ValueError(f"proximity has {len(proximity.query_points)} query and {len(proximity.reference_points)} "
                         f"reference points for {len(q)} query and {len(r)} reference feature rows")
    dev = choose_device(device or "auto")
    fast = compute_dtype or (torch.float16 if dev.type == "cuda" else torch.float32)
    q_unit, r_unit = _unit_rows(q), _unit_rows(r)
    r_dev = r_unit.to(dev, fast)
    # a spatial bonus needs one more (rows, Nr) block per chunk
    chunk = int(chunk_size or max(1, auto_chunk_size(r.shape[0], k) // (2 if proximity is not None else 1)))
    if chunk < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    indices = torch.empty((q.shape[0], k), dtype=torch.int64)
    similarity = torch.empty((q.shape[0], k), dtype=torch.float32)
    for start in range(0, q.shape[0], chunk):
        rows = slice(start, start + chunk)
        block = q_unit[rows].to(dev, fast) @ r_dev.T
        if proximity is not None:
            block = proximity.add_bonus(block.float(), rows)
        values, winners = block.topk(k, dim=1)
        del block
        indices[rows] = winners.cpu()
        if fast == torch.float32 and proximity is None:
            similarity[rows] = values.cpu()
        else:  # float16 products (or a bonus) only choose the winners; report exact float32 cosines
            similarity[rows] = torch.einsum("qe,qke->qk", q_unit[rows], r_unit[indices[rows]])
        report(progress, min(start + chunk, q.shape[0]) / q.shape[0], "matching features")
    if fast != torch.float32 and proximity is None and k > 1:  # re-sort: float16 may have swapped near-ties
        similarity, order = similarity.sort(dim=1, descending=True)
        indices = indices.gather(1, order)
    return indices.numpy(), similarity.numpy().astype(np.float32)


def nearest_neighbors(
    query, reference, chunk_size: int | None = None, device: str | None = None,
    progress: ProgressFn | None = None, proximity: RestProximity | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """For every query row, the most cosine-similar reference row.

    Returns ``indices`` (Nq,) int64 and ``similarity`` (Nq,) float32. Memory stays within
    ``chunk_size`` × Nr floats (see :func:`k_nearest_neighbors`).
    """
    indices, similarity = k_nearest_neighbors(query, reference, 1, chunk_size, device, progress,
                                              proximity=proximity)
    return indices[:, 0], similarity[:, 0]


@dataclass
class Correspondence:
    """A dense map between a source and a target mesh, both directions.

    ``target_to_source`` (Nt,) source vertex id per target vertex (the method's map);
    ``source_to_target`` (Ns,) the reverse nearest neighbour; ``target_similarity`` (Nt,) cosine
    similarity of each target vertex to its match; ``mutual`` (Nt,) bool, True where the map is
    cycle-consistent: going target → source → target lands on t itself, or within
    ``mutual_rings`` edge rings of t when target faces were given.
    """

    target_to_source: np.ndarray
    source_to_target: np.ndarray
    target_similarity: np.ndarray
    mutual: np.ndarray

    @property
    def mutual_fraction(self) -> float:
        return float(self.mutual.mean())


def vertex_adjacency(faces: np.ndarray, n_vertices: int):
    """(N, N) scipy CSR 0/1 matrix of mesh edges (no self loops)."""
    from scipy.sparse import coo_matrix

    faces = np.asarray(faces, dtype=np.int64)
    i = faces[:, [0, 1, 2, 1, 2, 0]].ravel()
    j = faces[:, [1, 2, 0, 0, 1, 2]].ravel()
    adjacency = coo_matrix((np.ones(len(i), dtype=np.float32), (i, j)), shape=(n_vertices, n_vertices)).tocsr()
    adjacency.data[:] = 1.0
    return adjacency


def within_rings(faces: np.ndarray, n_vertices: int, a: np.ndarray, b: np.ndarray, rings: int) -> np.ndarray:
    """(M,) bool: vertex ``a[m]`` is at most ``rings`` mesh edges from ``b[m]``."""
    a, b = np.asarray(a), np.asarray(b)
    close = a == b
    if rings <= 0 or close.all():
        return close
    from scipy.sparse import identity

    step = vertex_adjacency(faces, n_vertices) + identity(n_vertices, format="csr", dtype=np.float32)
    reach = step
    for _ in range(rings - 1):
        reach = (reach @ step).tocsr()
        reach.data[:] = 1.0
    return close | (np.asarray(reach[a, b]).ravel() > 0)


def smooth_features(features, faces: np.ndarray, iterations: int = 1) -> np.ndarray:
    """Average each vertex's (unit) feature with its 1-ring, ``iterations`` times; (N, E) float32.

    A cheap denoiser for per-vertex features before matching; see :func:`correspondence`.
    """
    x = _unit_rows(_as_features(features, "features")).numpy()
    n = len(x)
    if iterations <= 0:
        return x
    from scipy.sparse import diags, identity

    step = vertex_adjacency(faces, n) + identity(n, format="csr", dtype=np.float32)
    step = diags(1.0 / np.asarray(step.sum(axis=1)).ravel()) @ step
    for _ in range(iterations):
        x = step @ x
    return np.asarray(x, dtype=np.float32)


def correspondence(
    source_features, target_features, *, target_faces: np.ndarray | None = None, mutual_rings: int = 1,
    source_faces: np.ndarray | None = None, smooth_iterations: int = 0, chunk_size: int | None = None,
    device: str | None = None, progress: ProgressFn | None = None, proximity: RestProximity | None = None,
) -> Correspondence:
    """Match ``target_features`` (Nt, E) to ``source_features`` (Ns, E) both ways by cosine similarity.

    ``target_faces`` (Ft, 3) lets ``mutual`` accept a cycle that returns within ``mutual_rings``
    edge rings of the start (without faces, only an exact return counts). ``smooth_iterations`` > 0
    first averages each mesh's features over its 1-ring that many times (needs both faces arrays).
    Measured (quaternius rest pose → Walk frames, geometric features, mean geodesic error / √area):
    one iteration cut the error on one-piece meshes (horse 0.020 → 0.001, cow 0.003 → 0.001, man
    0.117 → 0.105) but raised it on the woman, whose 20 identical 24-vertex parts become
    indistinguishable (0.33 → 0.42). So it is off by default, as in the method; a similarity-weighted
    k-NN medoid vote was also tried and did not help (not offered). ``proximity`` (target points as
    queries, source points as references) adds a spatial prior to both directions (see :class:`RestProximity`).
    """
    if smooth_iterations > 0:
        if source_faces is None or target_faces is None:
            raise ValueError("smooth_iterations > 0 needs source_faces and target_faces")
        source_features = smooth_features(source_features, source_faces, smooth_iterations)
        target_features = smooth_features(target_features, target_faces, smooth_iterations)
    half = (lambda f, m="": report(progress, f / 2, m)) if progress else None
    rest = (lambda f, m="": report(progress, 0.5 + f / 2, m)) if progress else None
    t2s, sim = nearest_neighbors(target_features, source_features, chunk_size, device, half, proximity)
    s2t, _ = nearest_neighbors(source_features, target_features, chunk_size, device, rest,
                               proximity.swapped() if proximity else None)
    n_target = len(t2s)
    round_trip = s2t[t2s]
    if target_faces is not None:
        mutual = within_rings(target_faces, n_target, np.arange(n_target), round_trip, mutual_rings)
    else:
        mutual = round_trip == np.arange(n_target)
    return Correspondence(t2s, s2t, sim, mutual)


def input_vertex_matches(source_mesh: Mesh, target_mesh: Mesh, source_features: np.ndarray,
                         target_features: np.ndarray, rest_prior: float = 0.0, up: str | None = None,
                         landmark_prior: float = LANDMARK_PRIOR,
                         ) -> tuple[np.ndarray, np.ndarray, Correspondence]:
    """Matches for fitting a rig: for every *input* vertex of the target, its matched *input* vertex of
    the source (N_target_input,) int64 and a confidence (N_target_input,) in [0, 1] — 1 for a mutual
    match, 0.5 otherwise, 0 (with match 0) for a dropped vertex. Also returns the correspondence itself.

    The matcher adds :func:`matching_prior`: the landmark prior of weight ``landmark_prior`` (default on,
    aligned with these features) and, with ``rest_prior`` > 0 (both meshes at rest, as rigs are), a :class:`RestProximity` bonus of
    that weight; ``up`` ("x", "y", "z") is the meshes' up axis.
    """
    proximity = matching_prior(source_mesh, target_mesh, rest_prior, landmark_prior, up,
                               features=(source_features, target_features))
    corr = correspondence(source_features, target_features, target_faces=target_mesh.faces, proximity=proximity)
    matches = target_mesh.to_input(source_mesh.input_index[corr.target_to_source], fill=-1)
    confidence = target_mesh.to_input(np.where(corr.mutual, 1.0, 0.5), fill=0.0)
    usable = matches >= 0
    return np.where(usable, matches, 0).astype(np.int64), np.where(usable, confidence, 0.0), corr
