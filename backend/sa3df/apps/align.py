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
2. deforms the target *as similar as possible* to itself (:class:`SimilarDeformation`: every vertex's
   neighbourhood may turn and scale, not shear or stretch) to follow the pulls, with a stiffness of
   length ℓ (box diagonals, whatever the resolution), so a limb swings and scales as one piece instead
   of sliding along itself;
3. matches again, with the place term on the moved target.

ℓ shrinks from half the box to about a hundredth of it: first the proportions and the pose, then the
details. Bone names, vertex order and connectivity shared between the meshes are never used.
Measured (bench/bench_cross.py, trained features): against smoothing the pulls' displacements along the
surface (the previous step 2), the posed rows gain 1.5 points of region accuracy on average (the
running woman -> the walking human 0.843 -> 0.893) and one character's rest pose -> its walk halves its
geodesic error (0.045 -> 0.014, flip rate 0.008 -> 0.000).

Each vertex's best match lets many target vertices pull towards one source vertex (a thin wrist onto
the thick end of a forearm). The *balanced bend* then bends again from the start with every round's
matches read from a balanced assignment (:class:`BalancedAssignment`: entropic optimal transport, each
vertex of either mesh given the same mass). That is right when the two meshes share out their vertices
alike over the body (two poses of one character) and can be wrong when they do not (relative to its
area, the woman's head has half the man's share of vertices): equal masses then pull vertices into
the wrong part, and the pulls reach further. So each round's gap (the mean distance of a pulled vertex
to its goal) is checked against the plain bend's same round, and the balanced bend is dropped for the
plain one as soon as it passes :data:`BALANCED_GAP` times that. Measured (bench/bench_cross.py, trained features): fox ->
wolf at rest 0.903 -> 0.947 region accuracy, galloping 0.889 -> 0.925, the man at rest -> his walk
0.961 -> 0.995 (geodesic error 0.013 -> 0.003); the other pairs drop it (kept anyway, the humanoid
pairs fall 8 to 13 points, the Khronos fox pairs 6 to 8, horse -> cow 3 posed and gains 1 at rest).
"""

from __future__ import annotations

import numpy as np

# Stiffness lengths (box diagonals), each used for ROUNDS rounds of move-and-match.
ALIGN_LENGTHS = (0.5, 0.3, 0.2, 0.12, 0.08, 0.05, 0.03, 0.02, 0.012)
ROUNDS = 2
FRAME_STEPS = 4  # local/global steps of the deformation per round (bench_cross: 8 gains nothing)
MAX_PULLED = 3000  # vertices per mesh matched in each round: the rounds cost the product of the two
SCALE_RANGE = (0.5, 2.0)  # how much a neighbourhood may grow or shrink: no limb folds to a point
# The balanced bend (see the module notes): the entropy of its assignment, in score units (cosine plus
# bonuses); Sinkhorn iterations per round, warm-started from the last round's prices; and how far a
# round's pulls may reach, against the plain bend's same round, before it is dropped.
BALANCED_EPSILON = 0.1
BALANCED_ITERATIONS = 5
BALANCED_GAP = 1.75
# A plan column summing below this is redone in the log domain: next to MAX_PULLED · e^-80 ≈ 5e-32 (the
# exponent floor of sa3df.apps.match.EXP_FLOOR summed over a column) it is no longer negligible.
FADED_COLUMN = 1e-25


def edge_weights(graph, points: np.ndarray):
    """(N, N) symmetric scipy CSR matrix: 1 / length² on ``graph``'s edges between ``points``."""
    from scipy.sparse import coo_matrix

    edges = graph.tocoo()
    keep = edges.row != edges.col
    rows, cols = edges.row[keep], edges.col[keep]
    lengths = np.linalg.norm(points[rows] - points[cols], axis=1)
    floor = max(float(np.median(lengths)) * 1e-3, 1e-12)  # coincident vertices bridged across pieces
    weights = coo_matrix((1.0 / np.maximum(lengths, floor) ** 2, (rows, cols)), shape=graph.shape).tocsr()
    return weights.maximum(weights.T).tocsr()


class SimilarDeformation:
    """As-similar-as-possible deformation of ``rest`` (N, 3) on ``graph``'s edges: the points p that
    minimise Σ counts_v |p_v − goal_v|² + ℓ² Σ_edges w_ij |(p_i − p_j) − s_i R_i (rest_i − rest_j)|²
    (w = 1 / rest length², R_i a rotation and s_i a scale per vertex), by alternating the best s R per
    vertex (an SVD of its edges) and one sparse solve (Sorkine & Alexa's as-rigid-as-possible
    local/global steps, with a scale)."""

    def __init__(self, graph, rest: np.ndarray):
        from scipy.sparse import coo_matrix, diags

        self.rest = np.asarray(rest, dtype=np.float64)
        weights = edge_weights(graph, self.rest).tocoo()
        self.i, self.j, self.w = weights.row, weights.col, weights.data
        self.rest_edges = self.rest[self.i] - self.rest[self.j]
        n, e = len(self.rest), len(self.w)
        self.per_vertex = coo_matrix((np.ones(e), (self.i, np.arange(e))), shape=(n, e)).tocsr()  # sums edges
        self.laplacian = (diags(np.asarray(weights.tocsr().sum(axis=1)).ravel()) - weights.tocsr()).tocsc()
        self.rest_spread = self.per_vertex @ (self.w * (self.rest_edges**2).sum(axis=1))

    def frames(self, moved: np.ndarray) -> np.ndarray:
        """(N, 3, 3) per vertex, the scaled rotation s R best carrying its rest edges onto ``moved``'s."""
        moved_edges = moved[self.i] - moved[self.j]
        outer = (self.w[:, None, None] * self.rest_edges[:, :, None] * moved_edges[:, None, :]).reshape(-1, 9)
        covariance = (self.per_vertex @ outer).reshape(-1, 3, 3)
        u, _, vt = np.linalg.svd(covariance)
        flip = np.linalg.det(u @ vt) < 0  # never a reflection
        u[flip, :, 2] *= -1
        rotations = np.transpose(u @ vt, (0, 2, 1))
        carried = np.einsum("nij,nji->n", rotations, covariance)  # Σ w (moved edge · R rest edge)
        scales = np.clip(carried / np.maximum(self.rest_spread, 1e-30), *SCALE_RANGE)
        return rotations * scales[:, None, None]

    def fit(self, goals: np.ndarray, counts: np.ndarray, length: float, moved: np.ndarray,
            steps: int = FRAME_STEPS) -> np.ndarray:
        """(N, 3) the points following ``goals`` (N, 3, the sum of each vertex's ``counts`` (N,) pull
        targets) with stiffness ``length``, from ``moved`` (N, 3) in ``steps`` local/global steps."""
        from scipy.sparse import diags
        from scipy.sparse.linalg import factorized

        solve = factorized((diags(counts.astype(np.float64)) + length**2 * self.laplacian).tocsc())
        for _ in range(steps):
            frames = self.frames(moved)
            edges = 0.5 * self.w[:, None] * np.einsum("eab,eb->ea", frames[self.i] + frames[self.j], self.rest_edges)
            right = goals + length**2 * (self.per_vertex @ edges)
            moved = np.stack([solve(np.ascontiguousarray(right[:, k])) for k in range(3)], axis=1)
        return moved


def aligned_places(source_features, target_features, terms: list, places: int, target_graph,
                   lengths=ALIGN_LENGTHS, rounds: int = ROUNDS, device: str | None = None,
                   balanced: str = "auto") -> np.ndarray:
    """(Nt, 3) float32: the place term's target points (``terms[places].query_points``, a
    :class:`sa3df.apps.match.RestProximity` in a common box-normalised frame) bent onto its source
    points (``reference_points``) by the rounds of the module notes. Each round matches
    ``target_features`` (Nt, E) to ``source_features`` (Ns, E) by cosine plus all ``terms`` (the place
    term on the moved points); ``target_graph`` (Nt, Nt) is the target's surface graph. ``balanced``:
    "auto" runs the balanced bend after the plain one and keeps it unless its pulls stray (module
    notes), "always" keeps it, "never" skips it."""
    import copy

    from sa3df.apps.match import ProximitySum

    if balanced not in ("auto", "always", "never"):
        raise ValueError(f"balanced must be 'auto', 'always' or 'never', not {balanced!r}")
    terms = list(terms)
    target_features, source_features = unit_features(target_features), unit_features(source_features)
    start = np.asarray(terms[places].query_points, dtype=np.float64)
    source = np.asarray(terms[places].reference_points, dtype=np.float64)
    if (len(target_features), len(source_features)) != (len(start), len(source)) or \
            target_features.shape[1] != source_features.shape[1]:
        raise ValueError(f"features {tuple(source_features.shape)} (source) and {tuple(target_features.shape)} "
                         f"(target) do not fit meshes of {len(source)} and {len(start)} vertices, or differ in width")
    deformation = SimilarDeformation(target_graph, start)
    rows, cols = pulled_vertices(len(start), seed=0), pulled_vertices(len(source), seed=1)
    terms = [subset(term, rows, cols) for term in terms]
    target_features, source_features = target_features[rows], source_features[cols]
    schedule = [length for length in lengths for _ in range(rounds)]

    # cosine plus the bonuses that do not move (all but the place term), once for every round
    fixed = scores(target_features, source_features, ProximitySum(terms[:places] + terms[places + 1:]), device)

    def round_scores(points):
        place = copy.copy(terms[places])
        place.query_points = points[rows].astype(np.float32)
        return place.add_bonus(fixed.clone(), slice(0, len(rows)))

    def bend(assign, limits=None):
        """The bent points and each round's gap (mean distance of a pulled vertex to its goal), or
        (None, gaps) once a round's gap passes its entry of ``limits``."""
        moved, gaps = start, []
        for length in schedule:
            forward, backward = assign(moved)  # the last round's map is the caller's to make
            goals, counts = np.zeros_like(start), np.zeros(len(start))
            np.add.at(goals, rows, source[cols[forward]])
            np.add.at(goals, rows[backward], source[cols])
            np.add.at(counts, rows, 1.0)
            np.add.at(counts, rows[backward], 1.0)
            pulled = counts > 0
            gaps.append(float(np.linalg.norm(goals[pulled] / counts[pulled, None] - moved[pulled], axis=1).mean()))
            if limits is not None and gaps[-1] > limits[len(gaps) - 1]:
                return None, gaps
            moved = deformation.fit(goals, counts, length, moved)
        return moved, gaps

    plain, gaps = bend(lambda points: best_both_ways(round_scores(points)))
    if balanced == "never":
        return plain.astype(np.float32)
    assignment = BalancedAssignment()
    kept, _ = bend(lambda points: assignment(round_scores(points)),
                   limits=None if balanced == "always" else [BALANCED_GAP * gap for gap in gaps])
    return (plain if kept is None else kept).astype(np.float32)


class BalancedAssignment:
    """Every target vertex's and every source vertex's match under a balanced assignment: entropic
    optimal transport between uniform masses on the two meshes (Sinkhorn, entropy ``epsilon`` in score
    units), read as each row's and each column's best score plus the other side's price. The prices
    carry over from call to call (the rounds' scores change little), so each call runs only
    ``iterations`` Sinkhorn iterations.

    Each call takes one exact log-domain row step, which makes every row of the plan sum to its mass
    (so the plan's entries lie in [0, 1]: no overflow, and no row vanishes), forms that plan once and
    runs the iterations as matrix-vector products on it: one pass of exponentials over the (Nt, Ns)
    scores instead of two log-sum-exps an iteration. Where a column of the plan fades to the exponent
    floor (a source vertex no target vertex comes near), the iterations run in the log domain instead."""

    def __init__(self, epsilon: float = BALANCED_EPSILON, iterations: int = BALANCED_ITERATIONS):
        if epsilon <= 0 or iterations < 1:
            raise ValueError(f"the balanced assignment needs epsilon > 0 and at least one iteration, "
                             f"got {epsilon} and {iterations}")
        self.epsilon, self.iterations = epsilon, iterations
        self.source_prices = None

    def __call__(self, scores) -> tuple[np.ndarray, np.ndarray]:
        """(Nt,) the best source vertex of every target vertex and (Ns,) the best target vertex of every
        source vertex, for ``scores`` (Nt, Ns) float32 torch tensor."""
        n, m = scores.shape
        if self.source_prices is None or len(self.source_prices) != m:
            self.source_prices = scores.new_zeros(m)
        g = self.source_prices.to(scores.device)
        f, g = self._scaled_prices(scores, g) or self._log_prices(scores, g)
        self.source_prices = g
        forward = (scores + g).argmax(dim=1)
        backward = (scores + f[:, None]).argmax(dim=0)
        return forward.cpu().numpy(), backward.cpu().numpy()

    def _log_prices(self, scores, g):
        """The prices after :attr:`iterations` log-domain Sinkhorn iterations from source prices ``g``."""
        import math

        import torch

        eps, (n, m) = self.epsilon, scores.shape
        for _ in range(self.iterations):
            f = -eps * (math.log(n) + torch.logsumexp((scores + g) / eps, dim=1))
            g = -eps * (math.log(m) + torch.logsumexp((scores + f[:, None]) / eps, dim=0))
        return f, g

    def _scaled_prices(self, scores, g):
        """The same prices by scaling one plan; None where a column of it fades (:data:`FADED_COLUMN`)."""
        import math

        import torch

        from sa3df.apps.match import EXP_FLOOR

        eps, (n, m) = self.epsilon, scores.shape
        plan = scores.add(g).div_(eps)
        # the first iteration's row step, exact (in units of eps): every row of the plan then sums to 1/n
        f = -(math.log(n) + torch.logsumexp(plan, dim=1))
        plan.add_(f[:, None]).clamp_(min=EXP_FLOOR).exp_()
        f = eps * f
        u = plan.new_ones(n)
        for step in range(self.iterations):
            if step:
                u = (1.0 / n) / (plan @ v)
            columns = plan.T @ u
            if not bool((columns > FADED_COLUMN).all()):  # the floor would no longer be negligible
                return None
            v = (1.0 / m) / columns
        return f + eps * u.log(), g + eps * v.log()


def scores(target_features, source_features, prior, device: str | None = None):
    """(Nt, Ns) float32 torch tensor on ``device``: cosine of the :func:`unit_features` plus ``prior``'s
    bonus, whole (the balanced assignment reads every row and column at once; at most
    :data:`MAX_PULLED`² entries)."""
    from sa3df.core.device import choose_device

    dev = choose_device(device or "auto")
    block = target_features.to(dev) @ source_features.to(dev).T
    return prior.add_bonus(block, slice(0, len(target_features)))


def pulled_vertices(count: int, limit: int | None = None, seed: int = 0) -> np.ndarray:
    """(≤ limit,) sorted ids of the vertices whose matches pull in each round: all of them up to
    ``limit`` (default :data:`MAX_PULLED`), else a random ``limit`` of them drawn with ``seed`` (the
    deformation carries the rest along; the two meshes draw with different seeds, so a shared vertex
    order cannot make the samples agree)."""
    limit = MAX_PULLED if limit is None else limit
    if count <= limit:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, limit, replace=False))


def subset(term, rows: np.ndarray, cols: np.ndarray):
    """A copy of the :class:`sa3df.apps.match.RestProximity` ``term`` between its query points ``rows``
    and its reference points ``cols``."""
    import copy

    other = copy.copy(term)
    other.query_points, other.reference_points = term.query_points[rows], term.reference_points[cols]
    return other


def unit_features(features):
    """(N, E) float32 CPU tensor of ``features`` (numpy or torch) with unit rows, checked finite once."""
    from sa3df.apps.match import _as_features, _unit_rows

    return _unit_rows(_as_features(features, "features"))


def best_both_ways(scores) -> tuple[np.ndarray, np.ndarray]:
    """The best source vertex of every target vertex (Nt,) and the best target vertex of every source
    vertex (Ns,) under ``scores`` (Nt, Ns) torch tensor (one score, read along rows and along columns)."""
    return scores.argmax(dim=1).cpu().numpy(), scores.argmax(dim=0).cpu().numpy()
