"""The rig's differentiable linear-blend skinning in torch (conventions in :mod:`sa3df.motion.rig`)."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from sa3df.motion.rig import Rig


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

    def with_only(self, posed: torch.Tensor, local: torch.Tensor, bones: list[int]) -> torch.Tensor:
        """Posed bone frames (T, B, 4, 4) like ``posed`` (from :meth:`bone_matrices` of ``local``), with
        gradients through the listed ``bones``' local matrices only: every other bone's frame is held."""
        frames = list(posed.detach().unbind(1))
        per_bone = local.unbind(1)
        for b in sorted(bones):  # parents first
            p = self.parents[b]
            frames[b] = (self.offsets[b] if p < 0 else frames[p] @ self.offsets[b]) @ per_bone[b]
        return torch.stack(frames, dim=1)

    def skinning_matrices(self, posed: torch.Tensor) -> torch.Tensor:
        """(T, B, 3, 4) affine maps taking rest armature-space points to posed ones, per bone."""
        return (posed @ self.rest_inv)[..., :3, :]

    def skin(self, skinning: torch.Tensor, vertex_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Posed vertices (T, n, 3) for ``vertex_ids`` (default all) from skinning matrices (T, B, 3, 4).
        For the same rows posed again and again (a fit's steps), build :meth:`skinner` once instead."""
        return self.skinner(vertex_ids)(skinning)

    def skinner(self, vertex_ids: torch.Tensor | None = None, minus: torch.Tensor | None = None) -> "Skinner":
        """The skinning of fixed rows (``vertex_ids``, default all; less ``minus``'s, row by row), its
        constant part built once."""
        return Skinner(self, vertex_ids, minus)

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


class Skinner:
    """Linear-blend skinning of fixed vertices as ONE matrix product per call:
    ``v[t, n] = sum_{b,k} (w[n, b] * p[n, k]) * S[t, b, :, k]`` with homogeneous rest points p, i.e. the
    design (n, 4B) @ (4B, T*3); no (T, n, 3, 4) blend is ever formed, which keeps memory traffic (the CPU
    bottleneck) low. A vertex has a few bones of the B, so on the CPU the design is a sparse (CSR) matrix:
    both products of a fit step (forward, and its transpose for the gradient) took 2.9 + 3.2 ms on two
    threads against the dense ones' 8.1 + 6.0 (1,575 rows, 42 bones, 250 frames; 5.1 + 8.3 against 10.4 +
    7.8 on one). Unweighted vertices stay at rest.

    ``minus``: vertex ids as many as ``vertex_ids``, whose skinning is taken away row by row (edge vectors).
    A fit gives each of its terms a skinner of its own rows (data, edges, feet, heights) rather than
    gathering them from one posed array: each gradient then lands on the few skinning matrices instead of
    being summed over a (T, n, 3) array (that plumbing was 30 % of a fit step)."""

    def __init__(self, model: TorchRig, vertex_ids: torch.Tensor | None = None, minus: torch.Tensor | None = None):
        design, unweighted = self._design(model, vertex_ids)
        if minus is not None:
            other, other_unweighted = self._design(model, minus)
            design, unweighted = design - other, unweighted - other_unweighted
        self.unweighted = unweighted if bool((unweighted.abs() > 1e-5).any()) else None  # not float noise
        self.design, self.design_t = design, None
        if design.device.type == "cpu" and design.numel():
            with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta": the product is tested
                warnings.simplefilter("ignore", UserWarning)
                self.design, self.design_t = design.to_sparse_csr(), design.T.contiguous().to_sparse_csr()

    @staticmethod
    def _design(model: TorchRig, vertex_ids):
        """(design (n, 4B), rest place of the unweighted share (n, 3)) of the listed vertices."""
        weights, rest = model.weights, model.rest_vertices
        if vertex_ids is not None:
            weights, rest = weights[vertex_ids], rest[vertex_ids]
        homogeneous = torch.cat([rest, torch.ones_like(rest[:, :1])], dim=1)  # (n, 4)
        design = (weights[:, :, None] * homogeneous[:, None, :]).reshape(len(rest), 4 * weights.shape[1])
        return design, (1.0 - weights.sum(dim=1, keepdim=True)).clamp_min(0.0) * rest

    def __call__(self, skinning: torch.Tensor) -> torch.Tensor:
        """Posed vertices (T, n, 3) from skinning matrices (T, B, 3, 4)."""
        per_frame = skinning.transpose(-1, -2).flatten(1, 2)  # (T, 4B, 3): [t, 4b + k, i] = S[t, b, i, k]
        t, width, k = per_frame.shape
        flat = self._product(per_frame.permute(1, 0, 2).reshape(width, t * k))  # (rows, T*3)
        posed = flat.reshape(self.design.shape[0], t, k).permute(1, 0, 2)  # rows given: there may be none
        return posed if self.unweighted is None else posed + self.unweighted

    def heights(self, skinning: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        """(T, n) the posed vertices' components along the unit ``up`` (3,): the design applied to the
        skinning matrices' own components along up, a third of the product of :meth:`__call__`."""
        per_frame = skinning.transpose(-1, -2).flatten(1, 2)  # (T, 4B, 3)
        along = torch.einsum("tnk,k->nt", per_frame, up).contiguous()  # (4B, T); small, so einsum's bmm is cheap
        height = self._product(along).T
        return height if self.unweighted is None else height + self.unweighted @ up

    def _product(self, dense: torch.Tensor) -> torch.Tensor:
        if self.design_t is None:
            return self.design @ dense
        return _SparseProduct.apply(dense, self.design, self.design_t)


class _SparseProduct(torch.autograd.Function):
    """``matrix @ dense`` for a constant sparse ``matrix`` (given with its transpose, both CSR); gradient
    for ``dense`` only."""

    @staticmethod
    def forward(ctx, dense, matrix, matrix_t):
        ctx.matrix_t = matrix_t
        return matrix @ dense

    @staticmethod
    def backward(ctx, grad):
        return ctx.matrix_t @ grad.contiguous(), None, None


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


def pose_rig(rig: Rig, local: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Numpy convenience: (posed vertices (T, N, 3), bone heads (T, B, 3)) for basis matrices (T, B, 4, 4)."""
    model = TorchRig(rig, dtype=torch.float64)
    with torch.no_grad():
        verts, heads = model.pose(torch.as_tensor(np.asarray(local, dtype=np.float64)))
    return verts.numpy(), heads.numpy()
