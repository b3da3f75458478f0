"""Built-in example data, made in code so the demo and tests need no files or downloads.

:func:`humanoid` builds a left/right-symmetric character as an implicit surface (a smooth union of
capsules), meshes it with surface nets, skins it to a small skeleton and poses it. Two poses share
one connectivity, so vertex index is the ground-truth correspondence between them, and reflecting
the rest pose across x = 0 gives the mirrored (left<->right) ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sa3df.core.mesh import Mesh, from_arrays

# name: (parent, head, tail, radius). Z up, the character faces -Y, its left side is +X (Blender's convention).
SKELETON = {
    "pelvis": (None, (0.0, 0.0, 0.95), (0.0, 0.0, 1.15), 0.15),
    "chest": ("pelvis", (0.0, 0.0, 1.15), (0.0, 0.0, 1.45), 0.16),
    "head": ("chest", (0.0, 0.0, 1.55), (0.0, -0.02, 1.78), 0.11),
    "upper_arm.L": ("chest", (0.19, 0.0, 1.42), (0.44, 0.0, 1.40), 0.055),
    "forearm.L": ("upper_arm.L", (0.44, 0.0, 1.40), (0.68, -0.02, 1.38), 0.045),
    "thigh.L": ("pelvis", (0.1, 0.0, 0.92), (0.11, 0.0, 0.52), 0.075),
    "shin.L": ("thigh.L", (0.11, 0.0, 0.52), (0.11, 0.02, 0.1), 0.055),
    "foot.L": ("shin.L", (0.11, 0.02, 0.07), (0.12, -0.17, 0.04), 0.045),
}
for _name in [n for n in SKELETON if n.endswith(".L")]:
    _parent, _head, _tail, _radius = SKELETON[_name]
    _mirror = lambda p: (-p[0], p[1], p[2])  # noqa: E731
    SKELETON[_name[:-2] + ".R"] = (
        _parent.replace(".L", ".R") if _parent else None, _mirror(_head), _mirror(_tail), _radius,
    )
BONES = list(SKELETON)

# Poses as local rotations (axis-angle in degrees about world axes at rest; applied down the chain).
POSES = {
    "rest": {},
    "walk": {
        "thigh.L": ((1, 0, 0), 35), "shin.L": ((1, 0, 0), -40), "thigh.R": ((1, 0, 0), -25),
        "shin.R": ((1, 0, 0), -15), "upper_arm.L": ((0, 1, 0), 60), "upper_arm.R": ((0, 1, 0), -65),
        "forearm.L": ((1, 0, 0), 30), "forearm.R": ((0, 0, 1), 25), "chest": ((0, 0, 1), 12),
        "head": ((1, 0, 0), -12),
    },
    "crouch": {
        "pelvis": ((1, 0, 0), 10), "thigh.L": ((1, 0, 0), 70), "shin.L": ((1, 0, 0), -95),
        "thigh.R": ((1, 0, 0), 55), "shin.R": ((1, 0, 0), -80), "upper_arm.L": ((0, 1, 0), 20),
        "upper_arm.R": ((0, 0, 1), 40), "forearm.L": ((0, 0, 1), 70), "chest": ((1, 0, 0), 25),
    },
}


@dataclass
class ExampleCharacter:
    """A posed example character: ``mesh`` plus its skin ``weights`` (N, B) over :data:`BONES`."""

    mesh: Mesh
    weights: np.ndarray
    bone_names: list[str]


def _segment_distance(points: np.ndarray, head, tail) -> np.ndarray:
    a, b = np.asarray(head, float), np.asarray(tail, float)
    ab = b - a
    t = np.clip(((points - a) @ ab) / (ab @ ab), 0.0, 1.0)
    return np.linalg.norm(points - (a + t[..., None] * ab), axis=-1)


def humanoid_sdf(points: np.ndarray, blend: float = 0.04) -> np.ndarray:
    """Signed distance (approximately) to the rest-pose character: a smooth union of capsules.

    Evaluated on |x| with the centre and left bones only, so the field is exactly left/right symmetric
    (a smooth union depends on the order it is folded in).
    """
    points = np.concatenate(
        [np.abs(points[..., :1]), points[..., 1:]], axis=-1
    )
    field = None
    for name, (_, head, tail, radius) in SKELETON.items():
        if name.endswith(".R"):
            continue
        d = _segment_distance(points, head, tail) - radius
        if field is None:
            field = d
        else:  # polynomial smooth minimum: joints blend instead of creasing
            h = np.clip(0.5 + 0.5 * (d - field) / blend, 0.0, 1.0)
            field = d * (1 - h) + field * h - blend * h * (1 - h)
    return field


def surface_nets(values: np.ndarray, origin: np.ndarray, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """Mesh the zero level set of a sampled field (negative inside) with naive surface nets.

    One vertex per sign-changing cell (the mean of its edge crossings), one quad per sign-changing grid
    edge, oriented outwards. Returns (vertices (N, 3), quads (F, 4)).
    """
    shape = np.array(values.shape)
    corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    edges = [(a, b) for a in range(8) for b in range(a + 1, 8) if np.abs(corners[a] - corners[b]).sum() == 1]
    cells = tuple(shape - 1)
    total, count = np.zeros(cells + (3,)), np.zeros(cells)
    window = lambda c: values[c[0]:c[0] + cells[0], c[1]:c[1] + cells[1], c[2]:c[2] + cells[2]]  # noqa: E731
    for a, b in edges:
        va, vb = window(corners[a]), window(corners[b])
        crossing = (va < 0) != (vb < 0)
        t = np.where(crossing, va / np.where(crossing, va - vb, 1.0), 0.0)
        point = corners[a] + t[..., None] * (corners[b] - corners[a])
        total += point * crossing[..., None]
        count += crossing
    active = count > 0
    index = np.full(cells, -1, dtype=np.int64)
    index[active] = np.arange(active.sum())
    cell_ids = np.argwhere(active)
    vertices = origin + (cell_ids + total[active] / count[active][:, None]) * spacing
    quads = []
    for axis in range(3):
        u, v = (axis + 1) % 3, (axis + 2) % 3
        lo = [slice(0, -1) if d == axis else slice(1, -1) for d in range(3)]
        hi = [slice(1, None) if d == axis else slice(1, -1) for d in range(3)]
        crossing = (values[tuple(lo)] < 0) != (values[tuple(hi)] < 0)
        for edge in np.argwhere(crossing):
            grid = edge + np.array([0 if d == axis else 1 for d in range(3)])
            ring = []
            for du, dv in ((-1, -1), (0, -1), (0, 0), (-1, 0)):
                cell = grid.copy()
                cell[u] += du
                cell[v] += dv
                ring.append(index[tuple(cell)])
            inside_low = values[tuple(grid)] < 0
            quads.append(ring if inside_low else ring[::-1])
    return vertices, np.asarray(quads, dtype=np.int64)


def _rotation(axis, degrees) -> np.ndarray:
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    angle = np.radians(degrees)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def _bone_transforms(pose: dict) -> dict[str, np.ndarray]:
    """World 4x4 transform of each bone for a pose; parents come before children in SKELETON."""
    world = {}
    for name, (parent, head, _, _) in SKELETON.items():
        local = np.eye(4)
        if name in pose:
            rot = _rotation(*pose[name])
            local[:3, :3] = rot
            local[:3, 3] = np.asarray(head) - rot @ np.asarray(head)  # rotate about the bone's head
        world[name] = (world[parent] if parent else np.eye(4)) @ local
    return world


def _skin_weights(vertices: np.ndarray, max_influences: int = 2) -> np.ndarray:
    distance = np.stack(
        [_segment_distance(vertices, h, t) - r for _, h, t, r in SKELETON.values()], axis=1
    )
    weights = 1.0 / np.maximum(distance - distance.min(axis=1, keepdims=True) + 0.02, 1e-6) ** 4
    weights[weights < np.sort(weights, axis=1)[:, -max_influences][:, None]] = 0.0
    return weights / weights.sum(axis=1, keepdims=True)


def humanoid(pose: str = "rest", resolution: int = 64) -> ExampleCharacter:
    """The example character in a named pose ("rest", "walk", "crouch"); same vertices/faces for all poses.

    ``resolution`` is the grid size along the character's height (64 gives about 4k vertices).
    """
    if pose not in POSES:
        raise ValueError(f"Unknown pose '{pose}' (known: {', '.join(POSES)})")
    lo, hi = np.array([-0.9, -0.35, -0.05]), np.array([0.9, 0.35, 1.95])
    spacing = (hi[2] - lo[2]) / resolution
    # x = 0 on a cell centre, the grid symmetric about it: an exactly mirrored mesh, and no sample column
    # sitting in the narrow gap between the legs (which makes non-manifold cells).
    half_cells = int(np.ceil(hi[0] / spacing))
    lo[0] = -(half_cells - 0.5) * spacing
    axes = [lo[d] + spacing * np.arange(int(round((hi[d] - lo[d]) / spacing)) + 1) for d in range(3)]
    axes[0] = lo[0] + spacing * np.arange(2 * half_cells)
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    vertices, quads = surface_nets(humanoid_sdf(grid), lo, spacing)
    weights = _skin_weights(vertices)
    transforms = _bone_transforms(POSES[pose])
    homogeneous = np.c_[vertices, np.ones(len(vertices))]
    posed = sum(weights[:, b, None] * (homogeneous @ transforms[name].T)[:, :3] for b, name in enumerate(BONES))
    mesh = from_arrays(posed, quads, name=f"humanoid_{pose}")
    return ExampleCharacter(mesh=mesh, weights=weights[mesh.input_index], bone_names=list(BONES))
