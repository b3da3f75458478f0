"""Vertex colours that make features and correspondences visible: (N, 3) float32 RGB in [0, 1].

Used by the add-on (colour attributes) and the CLI (coloured PLY/OBJ). All functions are pure.
"""

from __future__ import annotations

import colorsys

import numpy as np

# A qualitative palette (Tableau 10 then its light shades): neighbours differ strongly in hue/lightness.
_PALETTE = np.array([
    [0.122, 0.467, 0.706], [1.000, 0.498, 0.055], [0.173, 0.627, 0.173], [0.839, 0.153, 0.157],
    [0.580, 0.404, 0.741], [0.549, 0.337, 0.294], [0.890, 0.467, 0.761], [0.498, 0.498, 0.498],
    [0.737, 0.741, 0.133], [0.090, 0.745, 0.812], [0.682, 0.780, 0.910], [1.000, 0.733, 0.471],
    [0.596, 0.875, 0.541], [1.000, 0.596, 0.588], [0.773, 0.690, 0.835], [0.769, 0.612, 0.580],
    [0.969, 0.714, 0.824], [0.780, 0.780, 0.780], [0.859, 0.859, 0.553], [0.620, 0.855, 0.898],
], dtype=np.float32)
UNLABELLED = np.array([0.2, 0.2, 0.2], dtype=np.float32)


def position_colors(vertices, low: float = 0.1, high: float = 0.9) -> np.ndarray:
    """Each vertex's position, min–max normalised per axis and mapped to [low, high] (x→R, y→G, z→B).

    ``vertices`` (N, 3). A flat axis (no extent) maps to the middle of the range.
    """
    v = np.asarray(vertices, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0:
        raise ValueError(f"vertices must be a non-empty (N, 3) array, got shape {v.shape}")
    extent = np.ptp(v, axis=0)
    unit = np.divide(v - v.min(axis=0), extent, out=np.full_like(v, 0.5), where=extent > 0)
    return (low + (high - low) * unit).astype(np.float32)


def correspondence_colors(source_vertices, target_to_source) -> tuple[np.ndarray, np.ndarray]:
    """Colour the source by position and each target vertex like its matched source vertex.

    ``target_to_source`` (Nt,) source vertex ids. Returns (source_rgb (Ns, 3), target_rgb (Nt, 3)).
    """
    source_rgb = position_colors(source_vertices)
    mapping = np.asarray(target_to_source)
    if mapping.ndim != 1 or (len(mapping) and (mapping.min() < 0 or mapping.max() >= len(source_rgb))):
        raise ValueError(f"target_to_source must be (Nt,) ids in [0, {len(source_rgb) - 1}]")
    return source_rgb, source_rgb[mapping]


def pca_colors(features: list, percentiles: tuple[float, float] = (1.0, 99.0), max_points: int = 50_000,
               seed: int = 0) -> list[np.ndarray]:
    """Map features of several meshes to RGB with one PCA fitted on all of them jointly.

    ``features`` list of (Ni, E) arrays. Rows are L2-normalised, the first three principal components
    (fitted on at most ``max_points`` rows, sign fixed so each component's largest loading is
    positive) are scaled by their joint ``percentiles`` to [0, 1] and clipped. Equal colours on two
    meshes therefore mean equal features. Returns a list of (Ni, 3) float32.
    """
    if not features:
        raise ValueError("pca_colors needs at least one feature array")
    blocks = [np.asarray(f, dtype=np.float32) for f in features]
    widths = {b.shape[1] if b.ndim == 2 else -1 for b in blocks}
    if len(widths) != 1 or -1 in widths:
        shapes = [b.shape for b in blocks]
        raise ValueError(f"every feature array must be (N, E) with one common E, got shapes {shapes}")
    for i, b in enumerate(blocks):
        if not np.isfinite(b).all():
            raise ValueError(f"features[{i}] has {int((~np.isfinite(b).all(axis=1)).sum())} non-finite rows")
    blocks = [b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12) for b in blocks]
    stacked = np.concatenate(blocks)
    fit = stacked
    if len(stacked) > max_points:
        fit = stacked[np.random.default_rng(seed).choice(len(stacked), max_points, replace=False)]
    fit = fit.astype(np.float64)
    mean = fit.mean(axis=0)
    centred = fit - mean
    _, vectors = np.linalg.eigh(centred.T @ centred)  # E×E covariance: cheap for any row count
    axes = vectors[:, ::-1][:, :3].T.copy()
    axes *= np.where(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)] < 0, -1.0, 1.0)[:, None]
    projected = (stacked - mean) @ axes.T
    lo, hi = np.percentile(projected, percentiles, axis=0)
    rgb = np.clip((projected - lo) / np.maximum(hi - lo, 1e-12), 0.0, 1.0)
    if rgb.shape[1] < 3:  # fewer than three feature dimensions: pad with mid grey
        rgb = np.hstack([rgb, np.full((len(rgb), 3 - rgb.shape[1]), 0.5)])
    splits = np.cumsum([len(b) for b in blocks])[:-1]
    return [part.astype(np.float32) for part in np.split(rgb, splits)]


def palette(k: int) -> np.ndarray:
    """(k, 3) float32 distinct colours: a qualitative table, then golden-ratio hues beyond 20."""
    if k <= len(_PALETTE):
        return _PALETTE[:k].copy()
    extra = [colorsys.hsv_to_rgb((0.61803398875 * i) % 1.0, 0.55 + 0.35 * (i % 2), 0.95 - 0.3 * (i % 3) / 2)
             for i in range(k - len(_PALETTE))]
    return np.vstack([_PALETTE, np.asarray(extra, dtype=np.float32)])


def label_colors(labels, k: int | None = None) -> np.ndarray:
    """(N, 3) float32 colour per integer label in [0, k); negative labels (unlabelled) are dark grey."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got {labels.dtype} {labels.shape}")
    k = int(labels.max()) + 1 if k is None and len(labels) else int(k or 0)
    if len(labels) and labels.max() >= k:
        raise ValueError(f"label {labels.max()} is out of range for k={k}")
    colors = palette(max(k, 1))
    out = np.where((labels >= 0)[:, None], colors[np.clip(labels, 0, None)], UNLABELLED)
    return out.astype(np.float32)
