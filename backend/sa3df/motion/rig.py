"""A skinned character rig as plain arrays (numpy only: the Blender add-on imports this; the torch skinning
is in :mod:`sa3df.motion.skinning`).

Conventions follow Blender's so that fitted poses can be keyed on pose bones unchanged:

- Everything lives in **armature space** (the armature object's local frame, in its own units).
- ``rest_matrices[b]`` is ``bone.matrix_local``: the bone's rest frame in armature space (Y along the bone).
- A pose is one *local* (basis) matrix per bone, ``pose_bone.matrix_basis``, expressed in the bone's rest
  frame. The posed bone frame is ``M[b] = M[parent] @ inv(R[parent]) @ R[b] @ basis[b]`` (roots:
  ``M[b] = R[b] @ basis[b]``), and a vertex moves by ``sum_b w[v, b] * M[b] @ inv(R[b])``, with weights
  normalised per vertex and unweighted vertices left at rest (Blender's Armature modifier).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Rig:
    """A skinned skeleton.

    ``bone_names`` (B,) with ``parents`` (B,) int (-1 for roots, every parent listed before its children);
    ``rest_matrices`` (B, 4, 4) bone rest frames in armature space; ``rest_vertices`` (N, 3) skin in
    armature space at rest; ``weights`` (N, B) skin weights (rows are normalised on construction; all-zero
    rows mean "not deformed"); ``faces`` (F, 3) optional triangles. ``root`` is the bone that carries
    root motion (default: the root with the most skin weight below it).
    """

    bone_names: list[str]
    parents: np.ndarray
    rest_matrices: np.ndarray
    rest_vertices: np.ndarray
    weights: np.ndarray
    faces: np.ndarray | None = None
    name: str = "rig"
    root: int = -1
    bone_tails: np.ndarray | None = None  # (B, 3) rest tails in armature space, for display/metrics
    connected: np.ndarray | None = None  # (B,) bool: head glued to the parent's tail (location ignored)
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.parents = np.asarray(self.parents, dtype=np.int64)
        self.rest_matrices = np.asarray(self.rest_matrices, dtype=np.float64)
        self.rest_vertices = np.asarray(self.rest_vertices, dtype=np.float64)
        weights = np.asarray(self.weights, dtype=np.float64)
        b, n = len(self.bone_names), len(self.rest_vertices)
        if self.parents.shape != (b,) or self.rest_matrices.shape != (b, 4, 4):
            raise ValueError(
                f"Rig '{self.name}': {b} bone names but parents {self.parents.shape} and rest matrices "
                f"{self.rest_matrices.shape}"
            )
        if weights.shape != (n, b):
            raise ValueError(f"Rig '{self.name}': weights must be ({n}, {b}), got {weights.shape}")
        bad = [i for i, p in enumerate(self.parents) if p >= i]
        if bad:
            raise ValueError(
                f"Rig '{self.name}': bones must be listed parents first; '{self.bone_names[bad[0]]}' comes "
                "before its parent"
            )
        if (weights < 0).any() or not np.isfinite(weights).all():
            raise ValueError(f"Rig '{self.name}': skin weights must be finite and non-negative")
        total = weights.sum(axis=1, keepdims=True)
        self.weights = np.divide(weights, total, out=np.zeros_like(weights), where=total > 1e-8)
        if self.root < 0:
            self.root = self._heaviest_root()

    @property
    def n_bones(self) -> int:
        return len(self.bone_names)

    @property
    def n_vertices(self) -> int:
        return len(self.rest_vertices)

    @property
    def skinned(self) -> np.ndarray:
        """(N,) True where a vertex follows at least one bone."""
        return self.weights.sum(axis=1) > 0

    @property
    def size(self) -> float:
        """Bounding-box diagonal of the rest skin (the fitter's length unit)."""
        return float(np.linalg.norm(np.ptp(self.rest_vertices, axis=0)))

    def subtree_weight(self) -> np.ndarray:
        """(B,) total skin weight carried by each bone and its descendants."""
        total = self.weights.sum(axis=0).copy()
        for b in range(self.n_bones - 1, -1, -1):
            if self.parents[b] >= 0:
                total[self.parents[b]] += total[b]
        return total

    def translating_bones(self) -> list[int]:
        """Bones whose pose may translate: roots, and bones all of whose ancestors carry no skin (e.g. a
        foot controller or the body under an unweighted root bone), if they move some skin and are not
        connected to their parent (Blender ignores a connected bone's location). The rest only rotate."""
        own = self.weights.sum(axis=0) > 0
        moves_skin = self.subtree_weight() > 0
        connected = np.zeros(self.n_bones, bool) if self.connected is None else np.asarray(self.connected, bool)
        free = []
        for b, p in enumerate(self.parents):
            if connected[b] or not moves_skin[b]:
                continue
            chain_weightless, q = True, p
            while q >= 0 and chain_weightless:
                chain_weightless, q = not own[q], self.parents[q]
            if chain_weightless:
                free.append(b)
        return free

    def _heaviest_root(self) -> int:
        roots = np.flatnonzero(self.parents < 0)
        if len(roots) == 0:
            raise ValueError(f"Rig '{self.name}' has no root bone")
        return int(roots[np.argmax(self.subtree_weight()[roots])])

    def edges(self) -> np.ndarray:
        """(E, 2) unique undirected mesh edges (empty without faces)."""
        if self.faces is None or len(self.faces) == 0:
            return np.zeros((0, 2), dtype=np.int64)
        f = np.asarray(self.faces, dtype=np.int64)
        e = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
        return np.unique(e, axis=0)


def place_in_armature(points_world: np.ndarray, target_world: np.ndarray, source_origin: np.ndarray | None = None,
                      target_origin: np.ndarray | None = None) -> np.ndarray:
    """World points (..., 3) into a target armature's space (its ``matrix_world`` (4, 4) inverted).

    With origins (world (3,)), the source's origin is first moved onto the target's, so a clip recorded
    around the source character plays around the target (the fit's "origin" placement expects this).
    """
    points = np.asarray(points_world, dtype=np.float64)
    if source_origin is not None:
        origin = np.asarray(target_world)[:3, 3] if target_origin is None else np.asarray(target_origin)
        points = points - np.asarray(source_origin) + origin
    inverse = np.linalg.inv(np.asarray(target_world, dtype=np.float64))
    return points @ inverse[:3, :3].T + inverse[:3, 3]
