"""Camera rigs around a mesh: where the views of a rendered extractor look from.

Cameras are pinhole, square-image, looking at the mesh's bounding-box centre. All positions are in
the frame the renderer works in (the mesh's own coordinates, or :meth:`Mesh.normalized` ones).
Two rigs:

- ``"grid"`` reproduces Diff3F: a ``steps × steps`` grid, ``steps = floor(sqrt(n))``, azimuth the
  outer loop and elevation the inner, both stepping over the full circle (so elevation ``e`` and
  ``180 - e`` at azimuth ``+180`` repeat a position), 90° field of view at 0.65 × the box diagonal.
- ``"fibonacci"`` spreads ``n`` directions evenly over the sphere (golden-angle spiral), no repeats,
  at a distance where the bounding sphere fits the field of view. The better default.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

UP_AXES = {"x": (1.0, 0.0, 0.0), "y": (0.0, 1.0, 0.0), "z": (0.0, 0.0, 1.0)}


@dataclass
class Camera:
    """A pinhole camera. ``position`` (3,), unit ``forward``/``up``/``right`` (3,) form a right-handed
    frame (right = forward × up); ``fov_deg`` is the full field of view of the square image."""

    position: np.ndarray
    forward: np.ndarray
    up: np.ndarray
    right: np.ndarray
    fov_deg: float

    def world_to_camera(self) -> np.ndarray:
        """(3, 3) rotation whose rows are right, up, -forward (camera x right, y up, z towards viewer)."""
        return np.stack([self.right, self.up, -self.forward])


def look_at(position, target, up_hint, fov_deg: float) -> Camera:
    """A camera at ``position`` looking at ``target``; ``up_hint`` (3,) is made orthogonal to the view.

    When the view is (nearly) parallel to ``up_hint``, another axis serves as the hint so the frame
    never degenerates.
    """
    position = np.asarray(position, dtype=np.float64)
    forward = np.asarray(target, dtype=np.float64) - position
    norm = np.linalg.norm(forward)
    if norm <= 0:
        raise ValueError("camera position coincides with its target")
    forward /= norm
    up_hint = np.asarray(up_hint, dtype=np.float64)
    if abs(np.dot(forward, up_hint)) > 0.999:
        up_hint = np.roll(up_hint, 1)
    right = np.cross(forward, up_hint)
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    return Camera(position, forward, up, right, float(fov_deg))


def bounding_box(vertices: np.ndarray) -> tuple[np.ndarray, float]:
    """(centre (3,), diagonal length) of the axis-aligned bounding box of (N, 3) vertices."""
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    return (lo + hi) / 2, float(np.linalg.norm(hi - lo))


def _up_frame(up_axis: str) -> np.ndarray:
    """(3, 3) rows: a horizontal axis, the up axis, and a second horizontal axis (right-handed)."""
    if up_axis not in UP_AXES:
        raise ValueError(f"up_axis must be one of {sorted(UP_AXES)}, got '{up_axis}'")
    if up_axis == "y":
        return np.eye(3)
    up = np.array(UP_AXES[up_axis])
    first = np.roll(up, 1)  # z-up: x stays x, so a z-up scene from Blender sees the same azimuths
    return np.stack([first, up, np.cross(first, up)])  # a rotation (det +1), never a mirror


def spherical_direction(elevation_deg, azimuth_deg, up_axis: str = "y") -> np.ndarray:
    """(..., 3) unit vectors from the target to the camera, PyTorch3D's convention for y-up:
    (cos e sin a, sin e, cos e cos a). Other up axes rotate that frame."""
    e, a = np.radians(elevation_deg), np.radians(azimuth_deg)
    local = np.stack([np.cos(e) * np.sin(a), np.sin(e), np.cos(e) * np.cos(a)], axis=-1)
    return local @ _up_frame(up_axis)


def grid_rig(vertices: np.ndarray, count: int = 100, up_axis: str = "y") -> list[Camera]:
    """Diff3F's rig: floor(sqrt(count))² views, azimuth outer loop, elevation inner loop, both over
    0..360° in equal steps; distance 0.65 × bounding-box diagonal; 90° field of view."""
    steps = max(1, int(np.floor(np.sqrt(count))))
    centre, diagonal = bounding_box(vertices)
    angles = np.arange(steps) * 360.0 / steps
    up = np.array(UP_AXES[up_axis])
    cameras = []
    for azimuth in angles:
        for elevation in angles:
            direction = spherical_direction(elevation, azimuth, up_axis)
            cameras.append(look_at(centre + 0.65 * diagonal * direction, centre, up, 90.0))
    return cameras


def fibonacci_directions(count: int, up_axis: str = "y") -> np.ndarray:
    """(count, 3) unit vectors evenly spread on the sphere (golden-angle spiral, pole to pole, with
    the poles themselves avoided so no view looks straight along the up axis)."""
    i = np.arange(count) + 0.5
    height = 1.0 - 2.0 * i / count  # along the up axis, in (-1, 1)
    radius = np.sqrt(1.0 - height**2)
    theta = np.pi * (3.0 - np.sqrt(5.0)) * i
    local = np.stack([radius * np.sin(theta), height, radius * np.cos(theta)], axis=1)
    return local @ _up_frame(up_axis)


def fibonacci_rig(vertices: np.ndarray, count: int = 100, fov_deg: float = 50.0, margin: float = 1.05,
                  up_axis: str = "y") -> list[Camera]:
    """``count`` views from evenly spread directions at the box centre. The distance puts the sphere
    around that centre through the farthest vertex (times ``margin``) just inside the field of view,
    so the mesh fills the image from every direction without being cut."""
    centre, _ = bounding_box(vertices)
    radius = float(np.linalg.norm(vertices - centre, axis=1).max()) or 1.0
    distance = margin * radius / np.sin(np.radians(fov_deg) / 2)
    up = np.array(UP_AXES[up_axis])
    return [look_at(centre + distance * d, centre, up, fov_deg) for d in fibonacci_directions(count, up_axis)]


def make_rig(kind: str, vertices: np.ndarray, count: int, up_axis: str = "y",
             fov_deg: float = 50.0) -> list[Camera]:
    """Build the rig named ``kind`` ("fibonacci" or "grid") for (N, 3) ``vertices``."""
    if kind == "fibonacci":
        return fibonacci_rig(vertices, count, fov_deg=fov_deg, up_axis=up_axis)
    if kind == "grid":
        return grid_rig(vertices, count, up_axis=up_axis)
    raise ValueError(f"Unknown camera rig '{kind}' (use 'fibonacci' or 'grid')")
