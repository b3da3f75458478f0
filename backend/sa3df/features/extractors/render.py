"""Multi-view rendering of a mesh by ray casting: per-pixel geometry, shaded images, control maps.

One ray per pixel centre through a pinhole camera (:mod:`.cameras`); the closest hit gives the
pixel's face id and barycentrics, from which everything else follows exactly: hit point, depth,
interpolated normal, and (in :mod:`.lift`) the three vertices the pixel's feature belongs to.
Image rows go top to bottom, columns left to right; pixel (r, c) has its centre at NDC
((2c + 1)/W - 1, 1 - (2r + 1)/H).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sa3df.features.extractors.cameras import Camera
from sa3df.features.extractors.raycast import make_ray_caster

# Diff3F's look: 0.8 grey, HardPhong with a point light at the camera, white background.
ALBEDO, AMBIENT, DIFFUSE, SPECULAR, SHININESS = 0.8, 0.6, (0.4, 0.4, 0.5), 0.01, 64.0
CREASE_DEG = 60.0


@dataclass
class RenderedViews:
    """Per-pixel geometry of B views at H×W, in the renderer's world frame.

    ``face_id`` (B, H, W) int64, -1 for background; ``barycentric`` (B, H, W, 3) float32;
    ``depth`` (B, H, W) float32 distance along each camera's viewing axis (0 on background);
    ``normal`` (B, H, W, 3) float32 unit shading normal (corner normals interpolated, hard edges
    kept, see :func:`corner_normals`), turned to face the camera when a back face is hit
    (0 on background); ``view_dir`` (B, H, W, 3) float32 unit ray directions.
    """

    cameras: list[Camera]
    face_id: np.ndarray
    barycentric: np.ndarray
    depth: np.ndarray
    normal: np.ndarray
    view_dir: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        """(B, H, W) bool: the pixel sees the mesh."""
        return self.face_id >= 0

    def __len__(self) -> int:
        return len(self.cameras)


def pixel_directions(camera: Camera, resolution: int) -> np.ndarray:
    """(H, W, 3) float32 unit world-space ray directions through the pixel centres of a square image."""
    ndc = ((2 * np.arange(resolution) + 1) / resolution - 1).astype(np.float32)
    half = np.float32(np.tan(np.radians(camera.fov_deg) / 2))
    right, up, forward = (np.asarray(a, dtype=np.float32) for a in (camera.right, camera.up, camera.forward))
    # Columns run left to right along `right`, rows top to bottom against `up`.
    directions = (forward + half * ndc[None, :, None] * right) + half * -ndc[:, None, None] * up
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    return directions


class Renderer:
    """Renders one mesh from many cameras. Builds the ray-casting structure once.

    ``vertices`` (N, 3) and ``faces`` (F, 3) in any frame (the extractors pass the normalised one);
    ``resolution`` is the square image side in pixels; ``engine`` picks the ray caster
    (:func:`.raycast.make_ray_caster`: "auto", "embree", "trimesh", "numpy"); ``crease_deg`` is the
    angle above which an edge shades hard (:func:`corner_normals`).
    """

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, resolution: int = 512, engine: str = "auto",
                 crease_deg: float = CREASE_DEG):
        if resolution < 1:
            raise ValueError(f"render resolution must be positive, got {resolution}")
        self.vertices = np.asarray(vertices, dtype=np.float64)
        self.faces = np.asarray(faces, dtype=np.int64)
        self.resolution = int(resolution)
        self.caster = make_ray_caster(self.vertices, self.faces, engine)
        self.corner_normals, self.face_normals = corner_normals(self.vertices, self.faces, crease_deg)

    @property
    def engine(self) -> str:
        return self.caster.name

    def render(self, cameras: list[Camera]) -> RenderedViews:
        """Cast one ray per pixel for every camera (all views in one batch of rays)."""
        if not cameras:
            raise ValueError("render needs at least one camera")
        res = self.resolution
        directions = np.empty((len(cameras), res, res, 3), dtype=np.float32)
        for b, camera in enumerate(cameras):
            directions[b] = pixel_directions(camera, res)
        origins = np.repeat(np.stack([c.position for c in cameras]).astype(np.float32), res * res, axis=0)
        hits = self.caster(origins, directions.reshape(-1, 3))
        shape = directions.shape[:3]
        face_id = hits.face_id.reshape(shape)
        barycentric = hits.barycentric.reshape(shape + (3,))
        forward = np.stack([c.forward for c in cameras])[:, None, None]
        cos_axis = (directions * forward).sum(-1)
        depth = np.where(face_id >= 0, hits.distance.reshape(shape) * cos_axis, 0.0).astype(np.float32)
        normal = self._shading_normals(face_id, barycentric, directions)
        return RenderedViews(list(cameras), face_id, barycentric, depth, normal, directions)

    def _shading_normals(self, face_id, barycentric, directions) -> np.ndarray:
        normal = np.zeros(face_id.shape + (3,), dtype=np.float32)
        hit = face_id >= 0
        corners = self.corner_normals[face_id[hit]]  # (P, 3, 3)
        n = (barycentric[hit][..., None] * corners).sum(axis=1)
        length = np.linalg.norm(n, axis=1, keepdims=True)
        n = np.divide(n, length, out=np.zeros_like(n), where=length > 0)
        # A back face (its winding faces away) turns to the viewer. Decided by the flat face normal:
        # an interpolated normal at a grazing silhouette may lean away even on a front face.
        back = (self.face_normals[face_id[hit]] * directions[hit]).sum(-1) > 0
        normal[hit] = np.where(back[:, None], -n, n)
        return normal

    def hit_points(self, views: RenderedViews) -> np.ndarray:
        """(B, H, W, 3) world-space surface points Σ b_k v_k (0 on background)."""
        points = np.zeros(views.face_id.shape + (3,), dtype=np.float64)
        hit = views.mask
        corners = self.vertices[self.faces[views.face_id[hit]]]
        points[hit] = (views.barycentric[hit][..., None] * corners).sum(axis=1)
        return points


def shade(views: RenderedViews, albedo: float = ALBEDO, ambient: float = AMBIENT, diffuse=DIFFUSE,
          specular: float = SPECULAR, shininess: float = SHININESS, background: float = 1.0) -> np.ndarray:
    """(B, H, W, 3) float32 RGB in [0, 1]: Phong shading with a head light (light at the camera), so
    the light direction equals the view direction. Background pixels are ``background`` grey."""
    cos = np.clip((views.normal * -views.view_dir).sum(-1, keepdims=True), 0.0, 1.0)
    # With the light at the eye the mirror direction makes angle 2θ with the view: cos 2θ = 2cos²θ - 1.
    highlight = np.clip(2 * cos**2 - 1, 0.0, 1.0) ** shininess
    colour = albedo * (ambient + np.asarray(diffuse, dtype=np.float32) * cos) + specular * highlight
    image = np.where(views.mask[..., None], np.clip(colour, 0.0, 1.0), background)
    return image.astype(np.float32)


def depth_image(views: RenderedViews, near_level: float = 1.0, far_level: float = 0.2) -> np.ndarray:
    """(B, H, W) float32 in [0, 1], the convention of depth ControlNets (near is bright): per view,
    the nearest hit maps to ``near_level``, the farthest to ``far_level``, background to 0.

    Diff3F maps the farthest hit to 0, the same as the background; keeping it at 0.2 lets the
    silhouette of the far side survive.
    """
    out = np.zeros(views.depth.shape, dtype=np.float32)
    for b in range(len(views)):
        hit = views.mask[b]
        if not hit.any():
            continue
        z = views.depth[b][hit]
        span = max(float(z.max() - z.min()), 1e-12)
        out[b][hit] = far_level + (near_level - far_level) * (z.max() - z) / span
    return out


def normal_image(views: RenderedViews, convention: str = "bae") -> np.ndarray:
    """(B, H, W, 3) float32 in [0, 1]: the normal map a normal ControlNet reads. Background is 0.

    ``"bae"``: camera-space normals in the protocol ``control_v11p_sd15_normalbae`` was trained on
    (ScanNet's, as its NormalBAE annotator outputs; the ControlNet 1.1 README: "blue is front, red is
    left, green is top"), each component mapped by (n + 1) / 2. ``"diff3f"``: Diff3F's map, world-space normals min–max
    scaled over the whole image.
    """
    if convention == "diff3f":
        return _diff3f_normal_image(views)
    if convention != "bae":
        raise ValueError(f"Unknown normal-map convention '{convention}' (use 'bae' or 'diff3f')")
    rotation = np.stack([c.world_to_camera() for c in views.cameras]).astype(np.float32)  # (B, 3, 3)
    camera_normals = np.einsum("bij,bhwj->bhwi", rotation, views.normal)
    camera_normals[..., 0] *= -1
    encoded = (camera_normals + 1) / 2
    return np.where(views.mask[..., None], encoded, 0.0).astype(np.float32)


def _diff3f_normal_image(views: RenderedViews) -> np.ndarray:
    out = np.zeros(views.normal.shape, dtype=np.float32)
    for b in range(len(views)):
        hit = views.mask[b]
        if hit.any():
            n = views.normal[b][hit]
            out[b][hit] = (n - n.min()) / max(float(n.max() - n.min()), 1e-12)
    return out


def _unit(vectors: np.ndarray) -> np.ndarray:
    length = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, length, out=np.zeros_like(vectors), where=length > 0)


def corner_normals(vertices: np.ndarray, faces: np.ndarray,
                   crease_deg: float = CREASE_DEG) -> tuple[np.ndarray, np.ndarray]:
    """Smooth shading normals that keep hard edges: ((F, 3, 3) unit normal per face corner, (F, 3) unit
    face normals).

    A corner's normal is the area-weighted mean of the normals of the faces around its vertex that
    deviate less than ``crease_deg`` from its own face (Blender's "auto smooth"), so a box shades
    flat and a sphere smooth. Work and memory are O(Σ valence²), linear in the mesh size.
    """
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    area_normals = np.cross(b - a, c - a)  # length = 2 · area, so sums are area-weighted
    unit_normals = _unit(area_normals)
    corner_vertex = faces.ravel()
    corner_face = np.repeat(np.arange(len(faces)), 3)
    order = np.argsort(corner_vertex, kind="stable")
    valence = np.bincount(corner_vertex, minlength=len(vertices))
    first = np.concatenate([[0], np.cumsum(valence)[:-1]])
    per_corner = valence[corner_vertex]
    corner = np.repeat(np.arange(len(corner_vertex)), per_corner)
    within = np.arange(len(corner)) - np.repeat(np.cumsum(per_corner) - per_corner, per_corner)
    other_face = corner_face[order[first[corner_vertex][corner] + within]]
    own_face = corner_face[corner]
    keep = (unit_normals[own_face] * unit_normals[other_face]).sum(1) >= np.cos(np.radians(crease_deg))
    sums = np.stack([np.bincount(corner[keep], area_normals[other_face[keep], k], len(corner_vertex))
                     for k in range(3)], axis=1)
    return _unit(sums).reshape(-1, 3, 3), unit_normals
