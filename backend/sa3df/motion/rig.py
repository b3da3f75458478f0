"""A skinned character rig as plain arrays, and its differentiable linear-blend skinning in torch.

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
import torch


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


class TorchRig:
    """The rig's constant tensors on one device, with batched forward kinematics and skinning."""

    def __init__(
        self, rig: Rig, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, unit: float = 1.0
    ):
        """``unit``: lengths are divided by it (the fitter works in units of the character's size)."""
        self.rig = rig
        self.device, self.dtype = torch.device(device), dtype
        as_t = lambda a: torch.as_tensor(np.asarray(a), dtype=dtype, device=self.device)  # noqa: E731
        self.parents = [int(p) for p in rig.parents]
        rest = rig.rest_matrices.copy()
        rest[:, :3, 3] /= unit
        self.rest = as_t(rest)
        self.rest_inv = as_t(np.linalg.inv(rest))
        # Rest offset of each bone in its parent's frame: inv(R[parent]) @ R[b] (roots: R[b]).
        offsets = np.array([rest[b] if p < 0 else np.linalg.inv(rest[p]) @ rest[b] for b, p in enumerate(rig.parents)])
        self.offsets = as_t(offsets.reshape(-1, 4, 4))
        self.weights = as_t(rig.weights)
        self.rest_vertices = as_t(rig.rest_vertices / unit)

    def bone_matrices(self, local: torch.Tensor) -> torch.Tensor:
        """Posed bone frames (T, B, 4, 4) in armature space from local basis matrices (T, B, 4, 4)."""
        posed: list[torch.Tensor] = []
        per_bone = local.unbind(1)  # one unbind (not B slices): its backward is a single stack
        for b, p in enumerate(self.parents):
            base = self.offsets[b] if p < 0 else posed[p] @ self.offsets[b]
            posed.append(base @ per_bone[b])
        return torch.stack(posed, dim=1)

    def skinning_matrices(self, posed: torch.Tensor) -> torch.Tensor:
        """(T, B, 3, 4) affine maps taking rest armature-space points to posed ones, per bone."""
        return (posed @ self.rest_inv)[..., :3, :]

    def skin(self, skinning: torch.Tensor, vertex_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Posed vertices (T, n, 3) for ``vertex_ids`` (default all) from skinning matrices (T, B, 3, 4).

        One matrix product per frame: ``v[t, n] = sum_{b,k} (w[n, b] * p[n, k]) * S[t, b, :, k]`` with
        homogeneous rest points p, i.e. (n, 4B) @ (4B, 3); no (T, n, 3, 4) blend is ever formed, which keeps
        memory traffic (the CPU bottleneck) low. Unweighted vertices stay at rest.
        """
        weights, rest = self.weights, self.rest_vertices
        if vertex_ids is not None:
            weights, rest = weights[vertex_ids], rest[vertex_ids]
        homogeneous = torch.cat([rest, torch.ones_like(rest[:, :1])], dim=1)  # (n, 4)
        design = (weights[:, :, None] * homogeneous[:, None, :]).reshape(len(rest), -1)  # (n, 4B)
        per_frame = skinning.transpose(-1, -2)  # (T, B, 4, 3): [t, b, k, i] = S[t, b, i, k]
        unweighted = (1.0 - weights.sum(dim=1, keepdim=True)).clamp_min(0.0) * rest
        return apply_to_frames(design, per_frame.flatten(1, 2)) + unweighted

    def pose(self, local: torch.Tensor, vertex_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(posed vertices (T, n, 3), bone head positions (T, B, 3)) for local basis matrices (T, B, 4, 4)."""
        posed = self.bone_matrices(local)
        return self.skin(self.skinning_matrices(posed), vertex_ids), posed[..., :3, 3]


def apply_to_frames(matrix: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """``matrix`` (m, n) applied to every frame of ``frames`` (T, n, k) -> (T, m, k) as ONE (m, n) @ (n, T*k)
    product: a broadcast batched product would first copy ``matrix`` T times."""
    t, n, k = frames.shape
    out = matrix @ frames.permute(1, 0, 2).reshape(n, t * k)
    return out.reshape(-1, t, k).permute(1, 0, 2)


def local_matrices(
    rotations: torch.Tensor, bones: list[int] | None = None, locations: torch.Tensor | None = None
) -> torch.Tensor:
    """Basis matrices (T, B, 4, 4) from local rotations (T, B, 3, 3) and, for the listed ``bones``,
    locations (T, len(bones), 3) in each bone's rest frame (Blender's ``pose_bone.location``)."""
    t, b = rotations.shape[:2]
    shift = rotations.new_zeros(t, b, 3, 1)
    if bones:
        columns = list(shift.unbind(1))
        for k, bone in enumerate(bones):
            columns[bone] = locations[:, k, :, None]
        shift = torch.stack(columns, dim=1)
    bottom = rotations.new_tensor([0.0, 0.0, 0.0, 1.0]).expand(t, b, 1, 4)
    return torch.cat([torch.cat([rotations, shift], dim=-1), bottom], dim=-2)


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


def pose_rig(rig: Rig, local: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Numpy convenience: (posed vertices (T, N, 3), bone heads (T, B, 3)) for basis matrices (T, B, 4, 4)."""
    model = TorchRig(rig, dtype=torch.float64)
    with torch.no_grad():
        verts, heads = model.pose(torch.as_tensor(np.asarray(local, dtype=np.float64)))
    return verts.numpy(), heads.numpy()
