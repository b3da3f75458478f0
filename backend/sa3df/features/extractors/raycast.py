"""Closest-hit ray casting against a triangle mesh: face id, barycentrics and distance per ray.

Three engines, fastest first:

- ``"embree"``: Intel Embree through ``embreex`` (the engine behind ``trimesh.ray.ray_pyembree``),
  called directly so the hit's barycentrics and distance come back with it (about 6× faster than
  going through trimesh's wrapper, which recomputes them). ~0.03 s for 512² rays on one core.
- ``"trimesh"``: trimesh's pure-Python engine (``trimesh.ray.ray_triangle``; needs ``rtree``).
- ``"numpy"``: Möller–Trumbore against the triangles binned per screen tile. Exact, needs nothing
  extra, tens of times slower than Embree.

``"auto"`` takes the first that is installed and warns when it has to fall back from Embree.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np


@dataclass
class RayHits:
    """Closest hits of R rays: ``face_id`` (R,) int64, -1 where the ray misses; ``barycentric`` (R, 3)
    float32 weights of the face's three corners (hit = Σ b_k v_k); ``distance`` (R,) float32 along the
    unit ray direction (inf on a miss)."""

    face_id: np.ndarray
    barycentric: np.ndarray
    distance: np.ndarray


def available_engines() -> list[str]:
    """Installed engines, fastest first."""
    engines = []
    try:
        import embreex  # noqa: F401

        engines.append("embree")
    except ImportError:
        pass
    try:
        import rtree  # noqa: F401

        engines.append("trimesh")
    except ImportError:
        pass
    return engines + ["numpy"]


def make_ray_caster(vertices: np.ndarray, faces: np.ndarray, engine: str = "auto"):
    """A ``cast(origins (R, 3), directions (R, 3) unit) -> RayHits`` callable for this mesh.

    The acceleration structure is built once here; keep the caster for all views of the mesh.
    """
    engines = available_engines()
    if engine == "auto":
        engine = engines[0]
        if engine != "embree":
            warnings.warn(
                f"embreex is not installed: rendering falls back to the '{engine}' ray engine, which is "
                "much slower (pip install embreex for Embree)", RuntimeWarning, stacklevel=2,
            )
    elif engine not in engines:
        raise ValueError(f"Ray engine '{engine}' is not available here (available: {', '.join(engines)})")
    vertices = np.ascontiguousarray(vertices, dtype=np.float64)
    faces = np.ascontiguousarray(faces, dtype=np.int64)
    return {"embree": _EmbreeCaster, "trimesh": _TrimeshCaster, "numpy": _NumpyCaster}[engine](vertices, faces)


class _EmbreeCaster:
    name = "embree"

    def __init__(self, vertices: np.ndarray, faces: np.ndarray):
        from embreex import rtcore_scene
        from embreex.mesh_construction import TriangleMesh

        self.scene = rtcore_scene.EmbreeScene()
        # Embree works in float32; callers render in a normalised frame, so precision is ample.
        TriangleMesh(self.scene, vertices.astype(np.float32)[faces])

    def __call__(self, origins: np.ndarray, directions: np.ndarray) -> RayHits:
        result = self.scene.run(
            np.ascontiguousarray(origins, dtype=np.float32), np.ascontiguousarray(directions, dtype=np.float32),
            output=1,
        )
        face_id = result["primID"].astype(np.int64)
        hit = face_id >= 0
        u, v = result["u"].astype(np.float32), result["v"].astype(np.float32)
        barycentric = np.stack([1.0 - u - v, u, v], axis=1)
        barycentric[~hit] = 0.0
        distance = np.where(hit, result["tfar"], np.inf).astype(np.float32)
        return RayHits(np.where(hit, face_id, -1), barycentric, distance)


class _TrimeshCaster:
    name = "trimesh"

    def __init__(self, vertices: np.ndarray, faces: np.ndarray):
        import trimesh
        from trimesh.ray.ray_triangle import RayMeshIntersector

        self.mesh = trimesh.Trimesh(vertices, faces, process=False)
        self.intersector = RayMeshIntersector(self.mesh)

    def __call__(self, origins: np.ndarray, directions: np.ndarray) -> RayHits:
        import trimesh

        tri, ray, location = self.intersector.intersects_id(
            origins, directions, multiple_hits=False, return_locations=True
        )
        return _hits_from_locations(self.mesh, tri, ray, location, origins, directions, trimesh)


def _hits_from_locations(mesh, tri, ray, location, origins, directions, trimesh) -> RayHits:
    count = len(origins)
    face_id = np.full(count, -1, dtype=np.int64)
    barycentric = np.zeros((count, 3), dtype=np.float32)
    distance = np.full(count, np.inf, dtype=np.float32)
    face_id[ray] = tri
    barycentric[ray] = trimesh.triangles.points_to_barycentric(mesh.triangles[tri], location)
    distance[ray] = np.einsum("ij,ij->i", location - origins[ray], directions[ray])
    return RayHits(face_id, barycentric, distance)


class _NumpyCaster:
    """Möller–Trumbore in plain array code, with screen-space binning so it stays usable.

    Rays sharing an origin (one camera) are projected onto a plane facing their mean direction and
    binned into tiles; each tile is tested only against the triangles whose projected bounding box
    overlaps it (a triangle straddling the origin's plane is tested everywhere, one fully behind it
    nowhere). Exact, like the brute force, since a triangle in front projects inside the box of its
    projected corners.
    """

    name = "numpy"
    rays_per_tile = 256

    def __init__(self, vertices: np.ndarray, faces: np.ndarray):
        self.triangles = vertices[faces]  # (F, 3, 3)
        self.v0 = self.triangles[:, 0]
        self.e1 = self.triangles[:, 1] - self.v0
        self.e2 = self.triangles[:, 2] - self.v0

    def __call__(self, origins: np.ndarray, directions: np.ndarray) -> RayHits:
        origins = np.asarray(origins, dtype=np.float64).reshape(-1, 3)
        directions = np.asarray(directions, dtype=np.float64).reshape(-1, 3)
        face_id = np.full(len(origins), -1, dtype=np.int64)
        barycentric = np.zeros((len(origins), 3), dtype=np.float32)
        distance = np.full(len(origins), np.inf, dtype=np.float32)
        unique, group = np.unique(origins, axis=0, return_inverse=True)
        for g, origin in enumerate(unique):
            rays = np.flatnonzero(group.ravel() == g)
            for tile_rays, candidates in self._tiles(origin, directions[rays]):
                index = rays[tile_rays]
                f, b, t = self._closest(origin, directions[index], candidates)
                face_id[index], barycentric[index], distance[index] = f, b, t
        return RayHits(face_id, barycentric, distance)

    def _tiles(self, origin: np.ndarray, directions: np.ndarray):
        """Yield (ray positions in ``directions``, candidate triangle ids) per screen tile."""
        axis = directions.mean(axis=0)
        axis /= max(np.linalg.norm(axis), 1e-12)
        cos = directions @ axis
        if len(directions) < 2 * self.rays_per_tile or cos.min() <= 0.05:
            yield np.arange(len(directions)), np.arange(len(self.v0))
            return
        u = np.cross(axis, [1.0, 0.0, 0.0] if abs(axis[0]) < 0.9 else [0.0, 1.0, 0.0])
        u /= np.linalg.norm(u)
        v = np.cross(axis, u)
        ray_xy = np.stack([directions @ u, directions @ v], axis=1) / cos[:, None]
        relative = self.triangles - origin
        depth = relative @ axis  # (F, 3)
        in_front, behind = (depth > 1e-9).all(axis=1), (depth <= 1e-9).all(axis=1)
        safe_depth = np.where(depth > 1e-9, depth, 1.0)[..., None]
        tri_xy = np.stack([relative @ u, relative @ v], axis=-1) / safe_depth  # (F, 3, 2)
        lo, hi = tri_xy.min(axis=1), tri_xy.max(axis=1)
        everywhere = np.flatnonzero(~in_front & ~behind)
        bins = max(1, int(np.sqrt(len(directions) / self.rays_per_tile)))
        edges_lo, edges_hi = ray_xy.min(axis=0), ray_xy.max(axis=0)
        scaled = (ray_xy - edges_lo) / np.maximum(edges_hi - edges_lo, 1e-12) * bins
        cell = np.minimum(scaled.astype(int), bins - 1)
        tile = cell[:, 0] * bins + cell[:, 1]
        order = np.argsort(tile, kind="stable")
        starts = np.searchsorted(tile[order], np.arange(bins * bins + 1))
        for k in range(bins * bins):
            members = order[starts[k]:starts[k + 1]]
            if len(members) == 0:
                continue
            box_lo, box_hi = ray_xy[members].min(axis=0), ray_xy[members].max(axis=0)
            overlap = in_front & (lo <= box_hi).all(axis=1) & (hi >= box_lo).all(axis=1)
            yield members, np.concatenate([np.flatnonzero(overlap), everywhere])

    def _closest(self, origin: np.ndarray, d: np.ndarray, candidates: np.ndarray):
        """Closest hit of rays (R, 3) from ``origin`` among ``candidates``: (face id, barycentric, t)."""
        count = len(d)
        if len(candidates) == 0:
            return np.full(count, -1), np.zeros((count, 3), np.float32), np.full(count, np.inf, np.float32)
        e1, e2, s = self.e1[candidates], self.e2[candidates], origin - self.v0[candidates]  # (C, 3)
        p = np.cross(d[:, None, :], e2[None])  # (R, C, 3)
        det = (p * e1[None]).sum(-1)
        ok = np.abs(det) > 1e-12
        inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
        u = (p * s[None]).sum(-1) * inv
        q = np.cross(s, e1)  # (C, 3)
        v = (d @ q.T) * inv
        t = (q * e2).sum(-1)[None] * inv
        t = np.where(ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 1e-9), t, np.inf)
        best = t.argmin(axis=1)
        rows = np.arange(count)
        best_t = t[rows, best]
        hit = np.isfinite(best_t)
        bu, bv = u[rows, best], v[rows, best]
        bary = (np.stack([1 - bu - bv, bu, bv], axis=1) * hit[:, None]).astype(np.float32)
        return np.where(hit, candidates[best], -1), bary, best_t.astype(np.float32)
