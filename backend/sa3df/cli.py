"""The ``sa3df`` command line: features, train, match, segment, eval, batch, demo.

Every command prints one clear line and exits non-zero on bad input; long stages show progress bars.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from sa3df import __version__
from sa3df.core import files as sio
from sa3df.features.settings import DEFAULT_PROXY_VERTICES, FeatureSettings


def _add_feature_options(p: argparse.ArgumentParser, train_default: int = 600) -> None:
    g = p.add_argument_group("features")
    g.add_argument("--extractor", default="geometric",
                   help="base features: auto, geometric (offline default), dino, diff3f")
    g.add_argument("--checkpoint", type=Path, help="trained surface-aware network folder (config.json + model.safetensors)")
    g.add_argument("--steps", type=int, default=train_default,
                   help="test-time training steps on the given meshes (0: only embed with --checkpoint)")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps")
    g.add_argument("--cache", type=Path, default=sio.default_cache_dir(),
                   help="folder for base-feature and geodesic caches (default: %(default)s)")
    g.add_argument("--cache-limit", type=float, metavar="MB",
                   help="size limit of each cache folder, least recently used entries removed first "
                        "(default: $SA3DF_CACHE_LIMIT_MB, else 2048; 0: no limit)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads for training (default: one per idle CPU, at most 4; fix it for results "
                        "that are bit-identical across runs on a machine whose load changes)")
    g.add_argument("--weights-dir", type=Path,
                   help="folder of model weights for dino/diff3f (hub ids as sub-folders, or a hub cache)")
    g.add_argument("--allow-downloads", action="store_true",
                   help="let dino/diff3f download missing weights from the model hub")
    g.add_argument("--proxy-vertices", type=int, default=DEFAULT_PROXY_VERTICES,
                   help="compute meshes above 1.25x this size on a simplified proxy of about this many vertices "
                        "and carry the features to every vertex (0: full resolution; default %(default)s)")
    g.add_argument("--up", choices=("x", "y", "z"),
                   help="turn every mesh about this axis to face like the first before features (for "
                        "characters facing different ways; rendered extractors orbit it; default: as given)")


def _add_batch_options(p: argparse.ArgumentParser) -> None:
    from sa3df.batch.plan import MANIFEST_HELP

    g = p.add_argument_group("batch", f"SOURCE as a manifest: {MANIFEST_HELP}. With --steps 0 each mesh is one "
                             "task (embedded with --checkpoint, or base features only without one); otherwise "
                             "each group is test-time trained in one task.")
    g.add_argument("--ray", metavar="ADDRESS", help="join this Ray cluster ('auto' or HOST:PORT; default: start "
                   "a local Ray). Every node must see the mesh paths")
    g.add_argument("--local-cpus", type=int, help="CPUs of the local Ray (default: all)")
    g.add_argument("--cpus-per-task", type=float, default=1.0)
    g.add_argument("--gpus-per-task", type=float, default=0.0)
    g.add_argument("--retries", type=int, default=3, help="runs again a task whose worker died (default: %(default)s)")
    g.add_argument("--group-by", choices=("mesh", "folder"), default="mesh",
                   help="training groups of a folder SOURCE: each mesh alone, or one per sub-folder")


def _features_for(args, paths: list[Path]):
    """Meshes and their features: from .npz feature files, else computed (test-time trained)."""
    if all(p.suffix == ".npz" for p in paths):
        return [sio.load_features(p) for p in paths], None
    meshes = [sio.load_mesh(p) for p in paths]
    for mesh in meshes:
        if mesh.report.summary() != "clean":
            print(f"{mesh.name}: cleaned: {mesh.report.summary()}", file=sys.stderr)
    result = _compute(args, meshes)
    return result.features, result


def feature_settings(args) -> FeatureSettings:
    """The feature options of a command as the one settings object of the feature path."""
    return FeatureSettings(
        extractor=args.extractor, steps=max(args.steps, 0), seed=args.seed, device=args.device,
        checkpoint=args.checkpoint, weights_dir=args.weights_dir, cache_dir=args.cache, cache_limit_mb=args.cache_limit,
        allow_downloads=args.allow_downloads, up_axis=args.up, proxy_vertices=args.proxy_vertices,
        training={"cpu_threads": args.threads} if args.threads else {},
    )


def _compute(args, meshes, settings: FeatureSettings | None = None, caches=None):
    """Base features, then the surface-aware embedding: test-time trained unless --steps 0."""
    from sa3df.features.pipeline import compute_surface_features

    if args.steps <= 0 and args.checkpoint is None:
        raise ValueError("--steps 0 needs --checkpoint (a trained network to embed with)")
    result = compute_surface_features(meshes, settings or feature_settings(args), caches=caches)
    print(f"base features: {result.extractor_name}", file=sys.stderr)
    return result


def _check_outputs(args, paths: list[Path] | None = None) -> None:
    """Before any work: ``--out`` must be a folder (or not exist yet), and no two inputs may write
    outputs of the same name into it (``a/body.obj`` and ``b/body.obj`` would overwrite each other)."""
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out '{args.out}' is a file; give a folder (it is created if missing)")
    seen: dict[str, Path] = {}
    for path in paths or []:
        if path.stem in seen:
            raise ValueError(f"Inputs '{seen[path.stem]}' and '{path}' would both write '{path.stem}' outputs "
                             f"into '{args.out}'; rename one of them")
        seen[path.stem] = path


def cmd_features(args) -> None:
    _check_outputs(args, args.meshes)
    items, result = _features_for(args, args.meshes)
    args.out.mkdir(parents=True, exist_ok=True)
    for item in items:
        path = sio.save_features(args.out / f"{item.mesh.name}.npz", item)
        print(f"{item.mesh.name}: {item.mesh.n_vertices} vertices, base {item.base.shape[1]}-d "
              f"({item.extractor}), embedding {item.embedding.shape[1]}-d -> {path}")
    if result is not None and result.network is not None:
        result.save(args.out / "network")
        print(f"network -> {args.out / 'network'}")


def cmd_train(args) -> None:
    if args.steps <= 0:
        raise ValueError("--steps must be positive for training")
    _check_outputs(args)
    if any(p.suffix == ".npz" or p.is_dir() for p in args.meshes):  # a data set from `sa3df batch`
        from sa3df.batch.dataset import archive_training_inputs

        meshes, settings, caches = archive_training_inputs(args.meshes, feature_settings(args))
        result = _compute(args, meshes, settings, caches)
    else:
        meshes = [sio.load_mesh(p) for p in args.meshes]
        result = _compute(args, meshes)
    result.save(args.out)
    last = result.history[-1] if result.history else {}
    print(f"trained on {len(meshes)} meshes; last loss {last.get('loss', float('nan')):.4f} -> {args.out}")


def cmd_match(args) -> None:
    _check_outputs(args)  # the PLYs are named *_source / *_target: same stems do not collide
    (source, target), _ = _features_for(args, [args.source, args.target])
    from sa3df.apps.colors import correspondence_colors
    from sa3df.apps.match import correspondence, matching_prior

    for option, value in (("--rest-prior", args.rest_prior), ("--landmark-prior", args.landmark_prior)):
        if value < 0:
            raise ValueError(f"{option} must be 0 or more, got {value}")
    kind = "base" if args.base else "embedding"
    features = getattr(source, kind), getattr(target, kind)
    prior = matching_prior(source.mesh, target.mesh, args.rest_prior, args.landmark_prior, args.up,
                           features=features if args.refine == "align" else None, device=args.device)
    corr = correspondence(*features, proximity=prior)
    args.out.mkdir(parents=True, exist_ok=True)
    matched = target.mesh.to_input(source.mesh.input_index[corr.target_to_source], fill=-1)
    np.savetxt(args.out / "target_to_source.txt", matched, fmt="%d",
               header=f"for each input vertex of {target.mesh.name}: matched input vertex of {source.mesh.name} "
                      "(-1: dropped in cleaning)")
    src_rgb, tgt_rgb = correspondence_colors(source.mesh.vertices, corr.target_to_source)
    sio.write_colored_ply(args.out / f"{source.mesh.name}_source.ply", source.mesh, src_rgb)
    sio.write_colored_ply(args.out / f"{target.mesh.name}_target.ply", target.mesh, tgt_rgb)
    print(f"matched {target.mesh.n_vertices} target vertices ({corr.mutual.mean():.0%} mutual) -> {args.out}")


def cmd_segment(args) -> None:
    _check_outputs(args, args.meshes)
    items, _ = _features_for(args, args.meshes)
    from sa3df.apps.colors import label_colors
    from sa3df.apps.limb_parts import carried_parts, sided_parts
    from sa3df.apps.segment import joint_kmeans

    embeddings = [i.embedding for i in items]
    meshes = [i.mesh for i in items]
    if args.up and args.parts_from == "first":  # as the add-on: parts on the first mesh, carried by the match
        labels, info = carried_parts(embeddings, meshes, args.parts, up=args.up, seed=args.seed, device=args.device)
        made = info["k"]
    elif args.up:  # the mirror plane is known: left and right limbs get parts of their own
        labels, info = sided_parts(embeddings, meshes, args.parts, up=args.up, seed=args.seed, device=args.device)
        made = info["k"]
    else:
        labels, _ = joint_kmeans(embeddings, args.parts, seed=args.seed)
        made = args.parts
    args.out.mkdir(parents=True, exist_ok=True)
    for item, lab in zip(items, labels):
        np.savetxt(args.out / f"{item.mesh.name}_labels.txt", item.mesh.to_input(lab, fill=-1), fmt="%d")
        sio.write_colored_ply(args.out / f"{item.mesh.name}_parts.ply", item.mesh, label_colors(lab, made))
        print(f"{item.mesh.name}: part sizes {np.bincount(lab, minlength=made).tolist()}")
    asked = f" ({args.parts} asked for)" if made != args.parts else ""
    print(f"{made} parts{asked}{', left and right apart' if args.up else ''} -> {args.out}")


def cmd_eval(args) -> None:
    from sa3df.apps.report import evaluate_pairs_report, format_report

    if args.folder:
        paths = sorted(p for p in args.folder.iterdir() if p.suffix.lower() in sio.MESH_SUFFIXES)
        if len(paths) < 2:
            raise ValueError(f"Folder '{args.folder}' holds fewer than two meshes")
        pairs = None
    else:
        if not (args.source and args.target and args.pairs):
            raise ValueError("give SOURCE TARGET --pairs FILE, or --folder DIR")
        paths, pairs = [args.source, args.target], sio.load_pairs(args.pairs)
    items, _ = _features_for(args, paths)
    report = evaluate_pairs_report(items, pairs, symmetric=args.symmetric)
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


def cmd_cache(args) -> None:
    from sa3df.core import storage

    if args.action == "clear":
        removed, size = storage.clear_cache(args.cache)
        print(f"removed {removed} cache file(s), {size / 2**20:.1f} MB, from {args.cache}")
        return
    print(storage.cache_summary(args.cache))


def cmd_batch(args) -> None:
    from sa3df.batch import RaySettings, plan_batch, require_ray, run_batch

    require_ray()
    features = feature_settings(args)
    groups = plan_batch(args.source, args.out, features, group_by=args.group_by)
    cluster = RaySettings(args.ray, args.local_cpus, args.cpus_per_task, args.gpus_per_task, args.retries)
    summary = run_batch(groups, features, cluster, summary_path=args.out / "batch_summary.json")
    print(summary.text())
    if summary.failed:
        raise RuntimeError(f"{len(summary.failed)} meshes failed (listed above and in {args.out / 'batch_summary.json'})")


def cmd_demo(args) -> None:
    from sa3df.demo import run_demo

    run_demo(args.out, steps=args.steps, device=args.device, seed=args.seed)


def build_parser() -> argparse.ArgumentParser:
    from sa3df.apps.landmarks import LANDMARK_PRIOR

    parser = argparse.ArgumentParser(prog="sa3df", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"sa3df {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("features", help="mesh(es) -> .npz of base + surface-aware features")
    p.add_argument("meshes", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True, help="folder (created if missing): one .npz per mesh")
    _add_feature_options(p)
    p.set_defaults(run=cmd_features)

    p = sub.add_parser("train", help="train a surface-aware network on meshes; writes a checkpoint folder")
    p.add_argument("meshes", nargs="+", type=Path,
                   help="mesh files, or feature archives (.npz) and folders of them (`sa3df batch` outputs)")
    p.add_argument("--out", type=Path, required=True, help="checkpoint folder (created if missing)")
    _add_feature_options(p, train_default=3000)
    p.set_defaults(run=cmd_train)

    p = sub.add_parser("match", help="dense correspondence target -> source; writes the map and coloured PLYs")
    p.add_argument("source", type=Path, help="mesh file or .npz from `sa3df features`")
    p.add_argument("target", type=Path)
    p.add_argument("--out", type=Path, required=True,
                   help="folder (created if missing): target_to_source.txt and both meshes as coloured PLYs")
    p.add_argument("--base", action="store_true", help="match with the base features (the baseline)")
    p.add_argument("--rest-prior", type=float, default=0.0, metavar="W",
                   help="bonus (up to W) for candidates at the same place in the box-normalised shapes, for "
                        "meshes posed alike such as characters at rest (0.2 in the add-on); default 0: off")
    p.add_argument("--landmark-prior", type=float, default=LANDMARK_PRIOR, metavar="W",
                   help="bonus (up to W each) for candidates alike in geodesic distances to the paired "
                        "extremities (hands, feet, head, tail) and, where the poses agree, in place; works "
                        "across characters and poses; give --up for characters (else the axis is guessed); "
                        "0: features only (default: %(default)s)")
    p.add_argument("--refine", choices=("align", "none"), default="align",
                   help="align: bend the target onto the source along its surface before the landmark prior's "
                        "place term, so proportions and poses may differ (default); none: the place term as is")
    _add_feature_options(p)
    p.set_defaults(run=cmd_match)

    p = sub.add_parser("segment", help="consistent part segmentation over several meshes (joint k-means; "
                                       "with --up, left and right limbs apart and the first mesh's parts "
                                       "carried to the others by the match)")
    p.add_argument("meshes", nargs="+", type=Path)
    p.add_argument("--parts", "-k", type=int, default=8)
    p.add_argument("--parts-from", choices=("first", "all"), default="first",
                   help="with --up: make the parts on the first mesh and carry them (default), or one k-means "
                        "over all meshes")
    p.add_argument("--out", type=Path, required=True,
                   help="folder (created if missing): per mesh, its labels (.txt) and a coloured PLY")
    _add_feature_options(p)
    p.set_defaults(run=cmd_segment)

    p = sub.add_parser("eval", help="correspondence accuracy: geodesic error, AUC, left/right flip rate")
    p.add_argument("source", type=Path, nargs="?")
    p.add_argument("target", type=Path, nargs="?")
    p.add_argument("--pairs", type=Path, help="text file: 'source_vertex target_vertex' per line")
    p.add_argument("--folder", type=Path, help="meshes with one connectivity (ground truth = vertex index); "
                   "each is matched to the first")
    p.add_argument("--symmetric", action="store_true",
                   help="targets are left/right symmetric: also report the flip rate")
    p.add_argument("--json", type=Path, help="also write the report as JSON")
    _add_feature_options(p)
    p.set_defaults(run=cmd_eval)

    p = sub.add_parser("cache", help="size of the on-disk caches (info) or empty them (clear)")
    p.add_argument("action", choices=("info", "clear"))
    p.add_argument("--cache", type=Path, default=sio.default_cache_dir(), help="cache folder (default: %(default)s)")
    p.set_defaults(run=cmd_cache)
    p = sub.add_parser("batch", help="features for a folder or manifest of meshes on Ray (pip install 'sa3df[ray]')")
    p.add_argument("source", type=Path, help="a folder of meshes (searched recursively) or a manifest file")
    p.add_argument("--out", type=Path, required=True, help="one .npz per mesh, mirroring the input folders")
    _add_batch_options(p)
    _add_feature_options(p)
    p.set_defaults(run=cmd_batch)

    p = sub.add_parser("demo", help="the whole method on built-in example characters, offline")
    p.add_argument("--out", type=Path, default=Path("demo_output"))
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except KeyboardInterrupt:
        print("sa3df: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError) as error:
        if os.environ.get("SA3DF_DEBUG"):
            raise
        print(f"sa3df {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
