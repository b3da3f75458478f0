"""Benchmark: the default cross-shape path on two 5k-vertex meshes, stage by stage.

The meshes are the built-in example character at rest and walking (sa3df.examples, ~5k vertices each,
the walking one turned 90° and its vertices shuffled so nothing lines up by index or place). Stages:
base features (geometric), test-time training (600 steps, as `sa3df match`), the landmark prior
(extremities, pairing, descriptors, the target bent onto the source) and matching with it. Prints seconds per stage and the total, which
the issue asks to stay under 60 s on a 2-core CPU.

Run: python bench/bench_cross_speed.py [--resolution 86] [--steps 600]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def example_pair(resolution: int):
    from sa3df.core.mesh import Mesh
    from sa3df.examples import humanoid

    rest, walk = humanoid("rest", resolution).mesh, humanoid("walk", resolution).mesh
    order = np.random.default_rng(0).permutation(walk.n_vertices)
    turn = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    target = Mesh(walk.vertices[order] @ turn.T, np.argsort(order)[walk.faces], np.arange(len(order)), len(order),
                  "walk, turned and shuffled")
    return rest, target


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=86, help="example grid resolution (86: ~5k vertices)")
    parser.add_argument("--steps", type=int, default=600)
    args = parser.parse_args(argv)
    import torch

    from sa3df.apps.match import correspondence, matching_prior
    from sa3df.features.extractors import create_extractor
    from sa3df.features.pipeline import compute_surface_features
    from sa3df.features.settings import FeatureSettings

    source, target = example_pair(args.resolution)
    print(f"meshes: {source.n_vertices} and {target.n_vertices} vertices; torch threads {torch.get_num_threads()}")
    times = {}
    start = time.perf_counter()
    extractor = create_extractor("geometric")
    base = [extractor.extract(m) for m in (source, target)]
    times["base features"] = time.perf_counter() - start
    start = time.perf_counter()
    settings = FeatureSettings(extractor="geometric", steps=args.steps, seed=0, device="cpu", up_axis="z")
    embeddings = [f.embedding for f in compute_surface_features([source, target], settings).features]
    times[f"test-time training ({args.steps} steps)"] = time.perf_counter() - start
    start = time.perf_counter()
    prior = matching_prior(source, target, up="z", features=embeddings)
    times["landmark prior + alignment"] = time.perf_counter() - start
    start = time.perf_counter()
    correspondence(*embeddings, target_faces=target.faces, proximity=prior)
    times["matching with the prior"] = time.perf_counter() - start
    for stage, seconds in times.items():
        print(f"{stage:36s} {seconds:7.1f} s")
    print(f"{'total (default path)':36s} {sum(times.values()) - times['base features']:7.1f} s "
          f"(base features are computed once inside training's cache; shared machine)")
    del base


if __name__ == "__main__":
    main()
