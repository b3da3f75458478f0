"""Closest-hit ray casting against a triangle mesh: face id, barycentrics and distance per ray.

Three engines, fastest first:

- ``"embree"``: Intel Embree through ``embreex`` (the engine behind ``trimesh.ray.ray_pyembree``),
  called directly so the hit's barycentrics and distance come back with it (about 6× faster than
  going through trimesh's wrapper, which recomputes them). ~0.03 s for 512² rays on one core.
- ``"trimesh"``: trimesh's pure-Python engine (``trimesh.ray.ray_triangle``; needs ``rtree``).
- ``"torch"``: a brute-force Möller–Trumbore test of every ray against every triangle, chunked.
  Needs nothing but torch; slow (seconds per 64² image on a 10k-face mesh) but exact.

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
    return engines + ["torch"]


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
    return {"embree": _EmbreeCaster, "trimesh": _TrimeshCaster, "torch": _TorchCaster}[engine](vertices, faces)


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


class _TorchCaster:
    """Every ray against every triangle (Möller–Trumbore), in chunks bounded to ~64 MB of temporaries."""

    name = "torch"

    def __init__(self, vertices: np.ndarray, faces: np.ndarray):
        import torch

        tri = torch.as_tensor(vertices[faces], dtype=torch.float32)
        self.v0 = tri[:, 0]
        self.e1 = tri[:, 1] - tri[:, 0]
        self.e2 = tri[:, 2] - tri[:, 0]

    def __call__(self, origins: np.ndarray, directions: np.ndarray) -> RayHits:
        import torch

        o_all = torch.as_tensor(np.asarray(origins), dtype=torch.float32)
        d_all = torch.as_tensor(np.asarray(directions), dtype=torch.float32)
        chunk = max(1, int(5e5 // max(len(self.v0), 1)))
        face_id, bary, dist = [], [], []
        for start in range(0, len(o_all), chunk):
            f, b, t = self._closest(o_all[start:start + chunk], d_all[start:start + chunk])
            face_id.append(f), bary.append(b), dist.append(t)
        return RayHits(
            torch.cat(face_id).numpy().astype(np.int64), torch.cat(bary).numpy().astype(np.float32),
            torch.cat(dist).numpy().astype(np.float32),
        )

    def _closest(self, o, d):
        import torch

        p = torch.cross(d[:, None, :].expand(-1, len(self.e2), -1), self.e2[None].expand(len(d), -1, -1), dim=2)
        det = (p * self.e1[None]).sum(-1)
        inv = 1.0 / torch.where(det.abs() > 1e-12, det, torch.full_like(det, float("inf")))
        s = o[:, None, :] - self.v0[None]
        u = (s * p).sum(-1) * inv
        q = torch.cross(s, self.e1[None].expand_as(s), dim=2)
        v = (d[:, None, :] * q).sum(-1) * inv
        t = (q * self.e2[None]).sum(-1) * inv
        valid = (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 1e-9) & (det.abs() > 1e-12)
        t = torch.where(valid, t, torch.full_like(t, float("inf")))
        best_t, best = t.min(dim=1)
        hit = torch.isfinite(best_t)
        rows = torch.arange(len(d))
        bu, bv = u[rows, best], v[rows, best]
        bary = torch.stack([1 - bu - bv, bu, bv], dim=1) * hit[:, None]
        return torch.where(hit, best, torch.full_like(best, -1)), bary, best_t
