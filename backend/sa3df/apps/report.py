"""Correspondence evaluation over several mesh pairs, base features against the surface-aware embedding."""

from __future__ import annotations

import numpy as np

from sa3df.core.files import MeshFeatures

MAX_PAIRS = 2000  # ground-truth pairs scored per mesh pair (a seeded sample beyond that)


def _clean_ids(item: MeshFeatures, input_ids: np.ndarray) -> np.ndarray:
    """Input vertex ids -> cleaned ids (-1 where the input vertex was dropped, or the id is -1: none)."""
    lookup = item.mesh.input_to_clean
    bad = (input_ids < -1) | (input_ids >= len(lookup))
    if bad.any():
        raise ValueError(f"ground truth names vertex {input_ids[bad][0]}, but '{item.mesh.name}' has "
                         f"{len(lookup)} (ids 0 to {len(lookup) - 1})")
    return np.where(input_ids >= 0, lookup[input_ids], -1)


def _identity_pairs(source: MeshFeatures, target: MeshFeatures) -> np.ndarray:
    if source.mesh.input_vertex_count != target.mesh.input_vertex_count:
        raise ValueError(
            f"'{target.mesh.name}' has {target.mesh.input_vertex_count} vertices but '{source.mesh.name}' has "
            f"{source.mesh.input_vertex_count}: vertex-index ground truth needs one connectivity"
        )
    ids = np.arange(source.mesh.input_vertex_count)
    return np.stack([ids, ids], axis=1)


def score_pair(source: MeshFeatures, target: MeshFeatures, pairs: np.ndarray,
               mirrored_targets: np.ndarray | None = None, seed: int = 0) -> dict:
    """Score NN matching source->target on ground-truth ``pairs`` (M, 2) input ids, for both feature kinds.

    ``mirrored_targets`` (M,) input ids: for each pair, the target vertex mirroring the true one (left<->right);
    with it, the flip rate is reported too.
    """
    from sa3df.apps.evaluate import evaluate_correspondence
    from sa3df.apps.match import nearest_neighbors

    src, tgt = _clean_ids(source, pairs[:, 0]), _clean_ids(target, pairs[:, 1])
    mirrored = None if mirrored_targets is None else _clean_ids(target, mirrored_targets)
    keep = (src >= 0) & (tgt >= 0) & (True if mirrored is None else mirrored >= 0)
    rows = np.flatnonzero(keep)
    if len(rows) > MAX_PAIRS:
        rows = np.sort(np.random.default_rng(seed).choice(rows, MAX_PAIRS, replace=False))
    result = {"source": source.mesh.name, "target": target.mesh.name, "pairs": int(len(rows))}
    for kind in ("base", "embedding"):
        predicted, _ = nearest_neighbors(getattr(source, kind)[src[rows]], getattr(target, kind))
        result[kind] = evaluate_correspondence(
            target.mesh, predicted, tgt[rows], None if mirrored is None else mirrored[rows]
        )
    return result


def _mirror_input_ids(item: MeshFeatures) -> np.ndarray:
    """(N_input,) each input vertex's left/right mirror vertex (input ids; -1 for dropped vertices). A vertex
    welded into another (a UV seam's copy) has its representative's mirror."""
    from sa3df.apps.evaluate import mirrored_ground_truth

    lookup = item.mesh.input_to_clean
    mirror = np.full(len(lookup), -1, dtype=np.int64)
    clean = mirrored_ground_truth(item.mesh.vertices, item.mesh.faces)
    kept = lookup >= 0
    mirror[kept] = item.mesh.input_index[clean[lookup[kept]]]
    return mirror


def evaluate_pairs_report(items: list[MeshFeatures], pairs: np.ndarray | None, symmetric: bool = False) -> dict:
    """Evaluate ``items[0]`` against each other item.

    With ``pairs`` (two meshes, input-id ground truth), flips are judged with the target's own mirror. Without
    (one connectivity), ground truth is the vertex index and the first mesh's mirror (its rest pose) serves.
    """
    source = items[0]
    source_mirror = _mirror_input_ids(source) if symmetric and pairs is None else None
    results = []
    for target in items[1:]:
        gt = pairs if pairs is not None else _identity_pairs(source, target)
        mirrored = None
        if symmetric:
            mirrored = source_mirror[gt[:, 0]] if pairs is None else _mirror_input_ids(target)[gt[:, 1]]
        results.append(score_pair(source, target, gt, mirrored))
    return {"extractor": source.extractor, "pairs": results, "mean": _mean_over(results)}


def _mean_over(results: list[dict]) -> dict:
    mean = {}
    for kind in ("base", "embedding"):
        keys = results[0][kind].keys()
        mean[kind] = {k: float(np.mean([r[kind][k] for r in results])) for k in keys}
    return mean


def format_report(report: dict) -> str:
    """A fixed-width table: one row per metric, base vs surface-aware."""
    mean = report["mean"]
    lines = [f"{len(report['pairs'])} pair(s), base extractor '{report['extractor']}'",
             f"{'metric':<28}{'base':>12}{'surface-aware':>16}"]
    for key in mean["base"]:
        fmt = "d" if key.endswith("count") else ".4f"  # counts are whole numbers
        base, ours = mean["base"][key], mean["embedding"][key]
        base, ours = (int(base), int(ours)) if fmt == "d" else (base, ours)
        lines.append(f"{key:<28}{base:>12{fmt}}{ours:>16{fmt}}")
    return "\n".join(lines)
