"""Features of a large mesh computed on a small proxy, then carried to every vertex.

Spectral base features, geodesic anchors and training cost grow with the vertex count, but the
features vary smoothly over the surface: a few thousand well-shaped vertices describe a character as
well as a million. :func:`build_proxy` simplifies the mesh (quadric edge collapse,
``fast-simplification``) and ties every input vertex to the closest point of the proxy's nearest
triangle; :meth:`Proxy.carry` interpolates per-proxy-vertex values there (barycentric), so the result
has one row per vertex of the original mesh. Correspondence, parts, skin weights and motion then
work on the original vertices as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sa3df.core.mesh import Mesh, from_arrays
from sa3df.features.settings import DEFAULT_PROXY_VERTICES

CANDIDATE_TRIANGLES = 4  # nearest triangles (by centroid) searched for each vertex's closest point
CLUSTER_FACTOR = 4  # grid clustering first brings very large meshes to this many times the proxy size
CHUNK = 100_000  # vertices projected at a time (bounds the memory of the search)


@dataclass
class Proxy:
    """A simplified copy ``mesh`` of an original mesh with ``n_original`` vertices.

    Original vertex i lies closest to proxy triangle ``triangles[i]`` at barycentric ``weights[i]``
    (3 non-negative numbers summing to 1).
    """

    mesh: Mesh
    triangles: np.ndarray
    weights: np.ndarray

    @property
    def n_original(self) -> int:
        return len(self.triangles)

    def carry(self, values: np.ndarray, unit_rows: bool = False) -> np.ndarray:
        """(P, ...) values on the proxy's vertices → (N, ...) float32 on the original vertices.

        ``unit_rows``: re-normalise each row (for unit feature vectors, whose blend is shorter).
        """
        values = np.asarray(values, dtype=np.float32)
        if len(values) != self.mesh.n_vertices:
            raise ValueError(f"Proxy of '{self.mesh.name}': got {len(values)} rows for {self.mesh.n_vertices} vertices")
        out = np.empty((self.n_original,) + values.shape[1:], dtype=np.float32)
        corners = self.mesh.faces[self.triangles]
        for lo in range(0, self.n_original, CHUNK):
            part = slice(lo, lo + CHUNK)
            w = self.weights[part].reshape((-1, 3) + (1,) * (values.ndim - 1))
            blend = sum(values[corners[part, k]] * w[:, k] for k in range(3))
            if unit_rows:
                blend /= np.maximum(np.linalg.norm(blend, axis=-1, keepdims=True), 1e-12)
            out[part] = blend
        return out


def needs_proxy(mesh: Mesh, proxy_vertices: int | None) -> bool:
    """Whether ``mesh`` is large enough to be computed on a proxy (``proxy_vertices`` None or 0: never)."""
    return bool(proxy_vertices) and mesh.n_vertices > proxy_vertices * 1.25


def build_proxy(mesh: Mesh, proxy_vertices: int = DEFAULT_PROXY_VERTICES) -> Proxy:
    """A proxy of about ``proxy_vertices`` vertices for ``mesh`` and each vertex's place on it."""
    if proxy_vertices < 100:
        raise ValueError(f"A proxy needs at least 100 vertices, got proxy_vertices={proxy_vertices}")
    vertices, faces = _simplified(mesh, proxy_vertices)
    proxy = from_arrays(vertices, faces, name=f"{mesh.name}_proxy")
    proxy = _referenced_only(proxy)
    triangles, weights = closest_triangles(proxy, mesh.vertices)
    return Proxy(mesh=proxy, triangles=triangles, weights=weights)


def _simplified(mesh: Mesh, proxy_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadric edge collapse to about ``proxy_vertices`` (two faces per vertex on a closed mesh).

    Quadric collapse slows down and stalls far from its target on very large, smooth meshes (a
    million vertices take minutes), so those are first clustered on a grid to ``CLUSTER_FACTOR``
    times the target: linear time, and the collapse that follows restores well-shaped triangles.
    """
    import fast_simplification

    vertices, faces = mesh.vertices.astype(np.float64), mesh.faces.astype(np.int64)
    if mesh.n_vertices > CLUSTER_FACTOR * proxy_vertices * 2:
        vertices, faces = grid_clustered(vertices, faces, CLUSTER_FACTOR * proxy_vertices)
    for _ in range(3):  # a pass can stop short of the target; the next one continues
        if len(faces) <= 2.5 * proxy_vertices:
            break
        vertices, faces = fast_simplification.simplify(vertices, faces, target_count=2 * proxy_vertices)
    if len(faces) == 0:
        raise ValueError(f"Mesh '{mesh.name}': simplifying to {proxy_vertices} vertices left no faces")
    return vertices, faces


def grid_clustered(vertices: np.ndarray, faces: np.ndarray, target_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge the vertices in each cell of a grid whose spacing gives about ``target_vertices`` cells
    on the surface; each cell's vertex is the mean of its members. Faces with two corners in one cell go."""
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1).sum()
    spacing = np.sqrt(area / target_vertices) if area > 0 else np.ptp(vertices, axis=0).max() / 100
    cells = np.floor((vertices - vertices.min(axis=0)) / spacing).astype(np.int64)
    _, cell_of, counts = np.unique(cells, axis=0, return_inverse=True, return_counts=True)
    cell_of = cell_of.ravel()
    merged = np.zeros((len(counts), 3))
    np.add.at(merged, cell_of, vertices)
    merged /= counts[:, None]
    tris = cell_of[faces]
    keep = (tris[:, 0] != tris[:, 1]) & (tris[:, 1] != tris[:, 2]) & (tris[:, 0] != tris[:, 2])
    return merged, tris[keep]


def _referenced_only(mesh: Mesh) -> Mesh:
    """The mesh without vertices that no face uses (simplification leaves some behind)."""
    used = np.unique(mesh.faces)
    if len(used) == mesh.n_vertices:
        return mesh
    remap = np.full(mesh.n_vertices, -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return from_arrays(mesh.vertices[used], remap[mesh.faces], name=mesh.name)


def closest_triangles(mesh: Mesh, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each of ``points`` (M, 3): the index of the closest of its nearest triangles of ``mesh``
    (by centroid) and barycentric weights (M, 3) of its closest point there."""
    from scipy.spatial import cKDTree

    origin = mesh.vertices.min(axis=0)  # float32 from here on: keep coordinates near zero
    corners = (mesh.vertices[mesh.faces] - origin).astype(np.float32)
    tree = cKDTree(corners.mean(axis=1))
    k = min(CANDIDATE_TRIANGLES, len(mesh.faces))
    triangles = np.empty(len(points), dtype=np.int64)
    weights = np.empty((len(points), 3), dtype=np.float32)
    for lo in range(0, len(points), CHUNK):
        p = (np.asarray(points[lo:lo + CHUNK]) - origin).astype(np.float32)
        _, candidates = tree.query(p, k=k, workers=-1)
        candidates = candidates.reshape(len(p), k)
        tri = corners[candidates]
        w = _clamped_barycentric(p[:, None, :], tri)
        offset = np.einsum("mkc,mkcd->mkd", w, tri) - p[:, None, :]
        best = np.argmin(np.einsum("mkd,mkd->mk", offset, offset), axis=1)
        rows = np.arange(len(p))
        triangles[lo:lo + len(p)] = candidates[rows, best]
        weights[lo:lo + len(p)] = w[rows, best]
    return triangles, weights


def _clamped_barycentric(p: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """Barycentric weights (..., 3) of ``p`` (..., 3) projected onto triangles ``tri`` (..., 3, 3),
    clamped to the triangle (negative weights cut to 0, the rest rescaled to sum 1)."""
    a = tri[..., 0, :]
    e0, e1, d = tri[..., 1, :] - a, tri[..., 2, :] - a, p - a

    def dot(x, y):
        return np.einsum("...d,...d->...", x, y)

    d00, d01, d11, d20, d21 = dot(e0, e0), dot(e0, e1), dot(e1, e1), dot(d, e0), dot(d, e1)
    denom = d00 * d11 - d01 * d01
    safe = np.where(np.abs(denom) > 1e-30, denom, 1.0)
    v = (d11 * d20 - d01 * d21) / safe
    w = (d00 * d21 - d01 * d20) / safe
    bary = np.clip(np.stack([1.0 - v - w, v, w], axis=-1), 0.0, None)
    total = bary.sum(axis=-1, keepdims=True)
    return np.where(total > 1e-12, bary / np.maximum(total, 1e-12), np.float32(1.0 / 3.0)).astype(np.float32)
