"""Geodesic distances (heat method) and farthest-point anchor pools, computed once per mesh.

Training needs, per step, the normalised geodesic distance from every vertex to a few anchors. The
reference code ran 100 heat solves per step; here an :class:`AnchorPool` of farthest-point anchors and
their distance columns is built once (one factorisation, P back-substitutions) and cached in memory
and on disk keyed by mesh content. Steps then sample columns from the pool.

Disconnected components: the heat method is run on each component separately. The distance between
two vertices of different components is defined as infinite; in a normalised pool it is 1, the
largest normalised distance ("as far apart as anything on the mesh").
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sa3df.core import storage
from sa3df.core.mesh import Mesh
from sa3df.core.progress import ProgressFn, steps


class GeodesicSolver:
    """Heat-method distances on a mesh; factorises once, then each source costs one solve.

    ``distances_from(i)`` returns (N,) float64 distances, ``inf`` on other components.
    """

    def __init__(self, mesh: Mesh):
        import potpourri3d as pp3d

        self.mesh = mesh
        self.component = mesh.components()
        self._solvers: dict[int, tuple[object, np.ndarray]] = {}
        face_component = self.component[mesh.faces[:, 0]]
        for c in np.unique(face_component):
            faces = mesh.faces[face_component == c]
            used = np.unique(faces)
            local = np.full(mesh.n_vertices, -1, dtype=np.int64)
            local[used] = np.arange(len(used))
            solver = pp3d.MeshHeatMethodDistanceSolver(mesh.vertices[used], local[faces])
            self._solvers[int(c)] = (solver, used)

    def distances_from(self, vertex: int) -> np.ndarray:
        out = np.full(self.mesh.n_vertices, np.inf)
        c = int(self.component[vertex])
        if c not in self._solvers:  # an unreferenced vertex: only itself is reachable
            out[vertex] = 0.0
            return out
        solver, used = self._solvers[c]
        local = int(np.searchsorted(used, vertex))
        d = np.asarray(solver.compute_distance(local), dtype=np.float64)
        d[local] = 0.0
        out[used] = np.maximum(d, 0.0)
        return out


@dataclass
class AnchorPool:
    """Farthest-point anchors and their normalised geodesic distance columns.

    ``anchors`` (P,) vertex ids; ``distances`` (N, P) float32 in [0, 1] = geodesic / ``scale``,
    1 across components; ``scale`` the largest finite geodesic distance seen (≈ the diameter).
    """

    anchors: np.ndarray
    distances: np.ndarray
    scale: float


def farthest_point_anchors(
    mesh: Mesh, count: int, seed: int = 0, solver: GeodesicSolver | None = None,
    progress: ProgressFn | None = None,
) -> AnchorPool:
    """Geodesic farthest-point sampling of ``count`` anchors from a seeded random start.

    Each new anchor is the vertex farthest from all previous ones; other components count as
    infinitely far, so every component receives an anchor before any gets a second.
    """
    n = mesh.n_vertices
    count = int(min(count, n))
    if count < 1:
        raise ValueError("count of anchors must be at least 1")
    solver = solver or GeodesicSolver(mesh)
    rng = np.random.default_rng(seed)
    anchors = np.empty(count, dtype=np.int64)
    columns = np.empty((n, count), dtype=np.float64)
    nearest = np.full(n, np.inf)
    current = int(rng.integers(n))
    for k in steps(range(count), count, progress, "geodesic anchors"):
        anchors[k] = current
        columns[:, k] = solver.distances_from(current)
        nearest = np.minimum(nearest, columns[:, k])
        unreached = np.isposinf(nearest)
        current = int(np.flatnonzero(unreached)[0]) if unreached.any() else int(np.argmax(nearest))
    finite = np.isfinite(columns)
    scale = float(columns[finite].max()) if finite.any() else 1.0
    scale = scale if scale > 0 else 1.0
    normalised = np.where(finite, columns / scale, 1.0).astype(np.float32)
    return AnchorPool(anchors=anchors, distances=normalised, scale=scale)


class AnchorCache:
    """Anchor pools kept in memory and, when ``folder`` is given, on disk keyed by mesh content.

    An explicit object (no module globals): the trainer, the CLI and the Blender worker each own one.
    """

    def __init__(self, folder: str | os.PathLike | None = None, limit_mb: float | None = None):
        self.folder = Path(folder) if folder else None
        self.limit_mb = limit_mb  # the folder's size limit (None: storage's default)
        self._memory: dict[str, AnchorPool] = {}

    def _key(self, mesh: Mesh, count: int, seed: int) -> str:
        return f"{mesh.content_hash()}_p{count}_s{seed}"

    def get(self, mesh: Mesh, count: int = 128, seed: int = 0, progress: ProgressFn | None = None) -> AnchorPool:
        """The pool of ``count`` anchors of ``mesh``: from memory, from disk when the entry checks out
        (:meth:`_read`), else computed and written (atomically; the folder kept under its size limit)."""
        key = self._key(mesh, count, seed)
        if key in self._memory:
            return self._memory[key]
        path = self.folder / f"anchors_{key}.npz" if self.folder else None
        pool = self._read(path, key, mesh, count) if path is not None else None
        if pool is None:
            pool = farthest_point_anchors(mesh, count, seed=seed, progress=progress)
            if path is not None:
                arrays = {"key": key, "anchors": pool.anchors, "distances": pool.distances, "scale": pool.scale}
                storage.write_npz(path, arrays)
                storage.prune(self.folder, storage.cache_limit_bytes(self.limit_mb), keep=path)
        self._memory[key] = pool
        return pool

    @staticmethod
    def _read(path: Path, key: str, mesh: Mesh, count: int) -> AnchorPool | None:
        """A cached pool, or ``None`` when the file is damaged, foreign, or its values cannot be right
        (shape, anchors out of range, distances outside [0, 1], a non-positive scale)."""
        data = storage.read_npz(path, key=key)
        if data is None:
            return None
        anchors, distances, scale = data.get("anchors"), data.get("distances"), data.get("scale")
        pool_size = min(count, mesh.n_vertices)
        if not (storage.finite_array(anchors, (pool_size,), np.int64)
                and storage.finite_array(distances, (mesh.n_vertices, pool_size))
                and storage.finite_array(scale, (), np.float64)):
            return None
        if anchors.min() < 0 or anchors.max() >= mesh.n_vertices or distances.min() < 0 or distances.max() > 1:
            return None
        if float(scale) <= 0 or not np.allclose(distances[anchors, np.arange(pool_size)], 0, atol=1e-6):
            return None
        return AnchorPool(anchors, distances, float(scale))
