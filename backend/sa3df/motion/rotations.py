"""Rotation representations used by the pose fitter: the continuous 6D form for optimisation,
matrices for kinematics, and Blender-ordered (w, x, y, z) quaternions for keying."""

from __future__ import annotations

import numpy as np
import torch

from sa3df.motion.skinning import apply_to_frames


def matrix_from_6d(six: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotations from (..., 6) vectors: the first two columns, Gram-Schmidt orthonormalised.

    The 6D form (Zhou et al. 2019) is continuous, so gradient steps never jump across a singularity.
    """
    a1, a2 = six[..., :3], six[..., 3:]
    b1 = torch.nn.functional.normalize(a1, dim=-1)
    b2 = torch.nn.functional.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)


def six_from_matrix(matrix: torch.Tensor) -> torch.Tensor:
    """(..., 6) from rotations (..., 3, 3): their first two columns."""
    return torch.cat([matrix[..., :, 0], matrix[..., :, 1]], dim=-1)


def weighted_covariances(
    source: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per group and frame, the centred cross-covariance of weighted ``source`` points and their ``targets``.

    ``source`` (n, 3) shared rest points, ``targets`` (T, n, 3) their matches per frame, ``weights`` (G, n)
    non-negative, one row per group (e.g. bone). Returns (covariances (T, G, 3, 3) = sum_i w_i t_i s_i^T
    centred and divided by the group's mass, source centroids (G, 3), target centroids (T, G, 3)). Cost is
    linear in n: no (T, G, n) tensor is formed.
    """
    mass = weights.sum(1).clamp_min(1e-12)  # (G,)
    src_mean = (weights @ source) / mass[:, None]
    tgt_mean = apply_to_frames(weights, targets) / mass[None, :, None]  # (T, G, 3)
    outer = (targets[..., :, None] * source[None, :, None, :]).reshape(targets.shape[0], -1, 9)
    cov = apply_to_frames(weights, outer).reshape(targets.shape[0], -1, 3, 3) / mass[None, :, None, None]
    return cov - tgt_mean[..., :, None] * src_mean[None, :, None, :], src_mean, tgt_mean


def nearest_rotation(cov: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) proper rotations R maximising trace(R^T cov) (Kabsch / orthogonal Procrustes)."""
    u, _, vh = torch.linalg.svd(cov)
    det = torch.det(u @ vh)
    fix = torch.ones_like(cov[..., 0])
    fix[..., 2] = torch.where(det < 0, -1.0, 1.0)
    return (u * fix[..., None, :]) @ vh


def quaternion_from_matrix(matrix: np.ndarray) -> np.ndarray:
    """(..., 4) unit quaternions (w, x, y, z) from rotation matrices (..., 3, 3), numerically safe everywhere."""
    m = np.asarray(matrix, dtype=np.float64)
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    trace = m00 + m11 + m22
    # Row k is 4 * q_k * q, exact for any k; the row with the largest |q_k| is the best conditioned.
    candidates = np.stack(
        [
            np.stack([1 + trace, m21 - m12, m02 - m20, m10 - m01], -1),
            np.stack([m21 - m12, 1 + 2 * m00 - trace, m01 + m10, m02 + m20], -1),
            np.stack([m02 - m20, m01 + m10, 1 + 2 * m11 - trace, m12 + m21], -1),
            np.stack([m10 - m01, m02 + m20, m12 + m21, 1 + 2 * m22 - trace], -1),
        ],
        axis=-2,
    )
    diag = np.stack([1 + trace, 1 + 2 * m00 - trace, 1 + 2 * m11 - trace, 1 + 2 * m22 - trace], -1)
    best = np.argmax(diag, axis=-1)
    q = np.take_along_axis(candidates, best[..., None, None], axis=-2)[..., 0, :]
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    return q * np.where(q[..., :1] < 0, -1.0, 1.0)


def matrix_from_quaternion(q: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotations from quaternions (..., 4) in (w, x, y, z) order (normalised first)."""
    q = np.asarray(q, dtype=np.float64)
    w, x, y, z = np.moveaxis(q / np.linalg.norm(q, axis=-1, keepdims=True), -1, 0)
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=-2,
    )


def continuous_quaternions(q: np.ndarray, axis: int = 0) -> np.ndarray:
    """Flip signs along ``axis`` (time) so consecutive quaternions lie in the same hemisphere; keyframe
    interpolation then takes the short way round."""
    q = np.moveaxis(np.array(q, dtype=np.float64), axis, 0)
    for t in range(1, len(q)):
        flip = (q[t] * q[t - 1]).sum(-1, keepdims=True) < 0
        q[t] = np.where(flip, -q[t], q[t])
    return np.moveaxis(q, 0, axis)


def rotation_angle(matrix: np.ndarray) -> np.ndarray:
    """(...,) rotation angles in radians of matrices (..., 3, 3)."""
    trace = np.trace(np.asarray(matrix), axis1=-2, axis2=-1)
    return np.arccos(np.clip((trace - 1) / 2, -1.0, 1.0))
