"""The feature jobs of the worker: environment check, Compute Features, correspondence, parts, skin weights.

:mod:`sa3df.service.jobs` registers them; :mod:`sa3df.service.protocol` names their arrays.
"""

from __future__ import annotations

import os

import numpy as np

from sa3df.apps.match import LANDMARK_PRIOR, matching_prior
from sa3df.core.progress import report
from sa3df.service import protocol as keys
from sa3df.service.context import JobContext, JobOutput
from sa3df.service.feature_service import feature_info, feature_settings, features_for_job


def matching_prior_for(ctx: JobContext, source, target, features: tuple):
    """:func:`sa3df.apps.match.matching_prior` from the job's params ``rest_prior`` (default 0),
    ``landmark_prior`` (default ``LANDMARK_PRIOR``) and ``refine`` ("align", the default, or "none"),
    and its feature settings' ``up_axis``; ``features`` (source's, target's) are the ones matched."""
    settings = feature_settings(ctx.params)
    refine = ctx.params.get("refine", "align")
    if refine not in ("align", "none"):
        raise ValueError(f"Unknown refinement '{refine}' (use 'align' or 'none')")
    return matching_prior(source, target, float(ctx.params.get("rest_prior", 0.0)),
                          float(ctx.params.get("landmark_prior", LANDMARK_PRIOR)), settings.up_axis or "y",
                          features=features if refine == "align" else None, device=settings.device)


def environment_job(ctx: JobContext) -> JobOutput:
    """Versions, the device "auto" picks, and the registered extractors (the add-on's "Check")."""
    import platform

    import torch

    from sa3df import __version__
    from sa3df.core.device import choose_device, default_dtype
    from sa3df.features import extractors

    device = choose_device(ctx.params.get("device", "auto"))
    info = {
        "sa3df": __version__, "location": os.path.dirname(os.path.dirname(__file__)), "torch": torch.__version__,
        "numpy": np.__version__, "device": str(device),
        "device_type": device.type, "python": platform.python_version(), "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        # the rendered extractors (DINOv2, Diff3F) run their image models at this precision on this device
        "precision": "fp16" if default_dtype(device) == torch.float16 else "fp32",
        "extractors": extractors.available_extractors(), "jobs": list(ctx.job_names),
    }
    return JobOutput({}, info)


def compute_features_job(ctx: JobContext) -> JobOutput:
    """Features of every mesh; returns ``pca{i}`` (N_i, 3) colours from one joint PCA of the embeddings."""
    from sa3df.apps.colors import pca_colors

    meshes, result = features_for_job(ctx, share=0.95)
    colors = pca_colors(result.embeddings)
    arrays = {keys.pca(i): m.to_input(np.asarray(c, np.float32), fill=0.5)
              for i, (m, c) in enumerate(zip(meshes, colors))}
    dims = {"base_dim": int(result.features[0].base.shape[1]), "embedding_dim": int(result.embeddings[0].shape[1])}
    return JobOutput(arrays, {**dims, **feature_info(meshes, result)})


def correspondence_job(ctx: JobContext) -> JobOutput:
    """Mesh 0 is the source; for every other mesh t: ``source_index{t}`` (N_t,) the matched source
    vertex (input ids, -1 where a vertex was dropped), ``similarity{t}``, ``mutual{t}`` and
    ``colors{t}`` (the source's position colours carried over); ``colors0`` the source's own. Matching
    adds :func:`matching_prior_for` (the landmark prior by default)."""
    from sa3df.apps.colors import correspondence_colors
    from sa3df.apps.match import correspondence

    meshes, result = features_for_job(ctx)
    source = meshes[0]
    if len(meshes) < 2:
        raise ValueError(f"Correspondence needs a source and at least one target mesh; got only '{source.name}'")
    arrays: dict[str, np.ndarray] = {}
    mutual_share = {}
    for t in range(1, len(meshes)):
        report(ctx.progress, 0.8 + 0.2 * (t - 1) / (len(meshes) - 1), f"matching {meshes[t].name}")
        target = meshes[t]
        features = result.embeddings[0], result.embeddings[t]
        corr = correspondence(*features, target_faces=target.faces,
                              proximity=matching_prior_for(ctx, source, target, features))
        source_rgb, target_rgb = correspondence_colors(source.vertices, corr.target_to_source)
        arrays[keys.colors(0)] = source.to_input(np.asarray(source_rgb, np.float32), fill=0.5)
        arrays[keys.colors(t)] = target.to_input(np.asarray(target_rgb, np.float32), fill=0.5)
        arrays[keys.source_index(t)] = target.to_input(source.input_index[corr.target_to_source], fill=-1)
        arrays[keys.similarity(t)] = target.to_input(np.asarray(corr.target_similarity, np.float32), fill=0.0)
        arrays[keys.mutual(t)] = target.to_input(np.asarray(corr.mutual, np.int8), fill=0)
        mutual_share[target.name] = round(float(np.mean(corr.mutual)), 3)
    return JobOutput(arrays, {"mutual_fraction": mutual_share, **feature_info(meshes, result)})


def segment_job(ctx: JobContext) -> JobOutput:
    """Consistent parts over all meshes: ``labels{i}`` (N_i,) int32 (-1 where a vertex was dropped)
    and ``colors{i}``. ``params["mode"]``: "kmeans" (``params["k"]`` parts, left and right limbs apart, made
    on mesh 0 and carried to the others by the correspondence: :func:`sa3df.apps.limb_parts.carried_parts`;
    ``params["parts_from"] = "all"``: one k-means over every mesh, :func:`sa3df.apps.limb_parts.sided_parts`)
    or "transfer" (input ``source_labels`` (N_0,) on mesh 0, -1 = unlabelled, carried to the others; param
    ``rest_prior`` as in :func:`transfer_weights_job`; both carry with :func:`matching_prior_for`'s params).
    Info: ``k`` the parts made over all meshes, ``parts_used`` the distinct parts on each mesh."""
    from sa3df.apps import limb_parts, segment
    from sa3df.apps.colors import label_colors

    mode, parts_from = ctx.params.get("mode", "kmeans"), ctx.params.get("parts_from", "first")
    if parts_from not in ("first", "all"):
        raise ValueError(f"Unknown parts_from '{parts_from}' (use 'first' or 'all')")
    meshes, result = features_for_job(ctx)
    smooth = 2 if ctx.params.get("smooth", True) else 0
    if mode == "kmeans":
        k = int(ctx.params.get("k", 8))
        report(ctx.progress, 0.85, f"k-means with {k} parts")
        up = feature_settings(ctx.params).up_axis or "y"
        seed = int(ctx.params.get("seed", 0))
        if parts_from == "all" or len(meshes) == 1:
            labels, info = limb_parts.sided_parts(result.embeddings, meshes, k, up=up, seed=seed,
                                                  smooth_iterations=smooth)
        else:
            labels, info = limb_parts.carried_parts(result.embeddings, meshes, k, up=up, seed=seed,
                                                 smooth_iterations=smooth, maps=_maps_from_first(ctx, meshes, result))
        k = info["k"]
    elif mode == "transfer":
        labels = _transferred_labels(ctx, meshes, result, segment.transfer_labels)
        k = int(max(int(np.max(l)) for l in labels) + 1)
        labels = [segment.smooth_labels(l, m.faces, smooth) for l, m in zip(labels, meshes)]
    else:
        raise ValueError(f"Unknown segmentation mode '{mode}' (use 'kmeans' or 'transfer')")
    arrays = {}
    for i, (mesh, lab) in enumerate(zip(meshes, labels)):
        lab = np.asarray(lab, dtype=np.int32)
        arrays[keys.labels(i)] = mesh.to_input(lab, fill=-1)
        arrays[keys.colors(i)] = mesh.to_input(np.asarray(label_colors(lab, k), np.float32), fill=0.5)
    used = {m.name: int(len(np.unique(l[l >= 0]))) for m, l in zip(meshes, labels)}
    return JobOutput(arrays, {"k": k, "parts_used": used, **feature_info(meshes, result)})


def _maps_from_first(ctx: JobContext, meshes, result) -> list[np.ndarray]:
    """(N_i,) the matched vertex of mesh 0 for every vertex of each later mesh, as Show Correspondence matches."""
    from sa3df.apps.match import correspondence

    maps = []
    for t in range(1, len(meshes)):
        features = (result.embeddings[0], result.embeddings[t])
        prior = matching_prior_for(ctx, meshes[0], meshes[t], features)
        maps.append(correspondence(*features, proximity=prior).target_to_source)
    return maps


def _transferred_labels(ctx: JobContext, meshes, result, transfer_labels) -> list[np.ndarray]:
    if keys.SOURCE_LABELS not in ctx.inputs:
        raise ValueError("Segment 'transfer' mode needs the source mesh's labels (input 'source_labels')")
    source_labels = np.asarray(ctx.inputs[keys.SOURCE_LABELS])[meshes[0].input_index]
    known = source_labels >= 0
    if not known.any():
        raise ValueError(f"Mesh '{meshes[0].name}' has no labelled vertex to transfer")
    out = [np.where(known, source_labels, 0)]
    for t in range(1, len(meshes)):
        prior = matching_prior_for(ctx, meshes[0], meshes[t], (result.embeddings[0], result.embeddings[t]))
        out.append(transfer_labels(source_labels[known], result.embeddings[0][known], result.embeddings[t],
                                   proximity=prior.among_references(known) if prior else None))
    if not known.all():  # give the source's unlabelled vertices the label of their best match too
        out[0] = transfer_labels(source_labels[known], result.embeddings[0][known], result.embeddings[0])
        out[0][known] = source_labels[known]
    return out


def transfer_weights_job(ctx: JobContext) -> JobOutput:
    """Skin weights of mesh 0 (input ``source_weights`` (N_0, K), rows of vertex-group weights)
    carried to every other mesh t: ``weights{t}`` (N_t, K) float32, rows summing to 1. Param
    ``rest_prior`` (default 0): weight of the rest-pose proximity bonus, for meshes posed alike; param
    ``landmark_prior`` (default ``LANDMARK_PRIOR``; 0: off) see :func:`matching_prior_for`."""
    from sa3df.apps.transfer import transfer_vertex_weights

    meshes, result = features_for_job(ctx)
    if len(meshes) < 2:
        raise ValueError(f"Skin-weight transfer needs a source and a target mesh; got only '{meshes[0].name}'")
    weights = np.asarray(ctx.inputs.get(keys.SOURCE_WEIGHTS), dtype=np.float32)
    if weights.ndim != 2 or len(weights) != meshes[0].input_vertex_count:
        raise ValueError(
            f"Mesh '{meshes[0].name}': source weights must be ({meshes[0].input_vertex_count}, K), got {weights.shape}"
        )
    source_weights = weights[meshes[0].input_index]
    arrays = {}
    for t in range(1, len(meshes)):
        report(ctx.progress, 0.8 + 0.2 * (t - 1) / (len(meshes) - 1), f"weights for {meshes[t].name}")
        prior = matching_prior_for(ctx, meshes[0], meshes[t], (result.embeddings[0], result.embeddings[t]))
        target_weights = transfer_vertex_weights(
            source_weights, result.embeddings[0], result.embeddings[t], target_faces=meshes[t].faces,
            proximity=prior,
        )
        arrays[keys.weights(t)] = meshes[t].to_input(np.asarray(target_weights, np.float32), fill=0.0)
    return JobOutput(arrays, {**feature_info(meshes, result)})
