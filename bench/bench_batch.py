"""Throughput of ``sa3df batch`` on a local Ray: meshes per minute with 1 and 2 workers, against the same
meshes computed one after another in this process (no Ray, after one untimed warm-up mesh).

Each mesh is one task: geometric base features (no cache: computed every time) + embedding with a
checkpoint (``--steps 0``), or test-time training per mesh with ``--steps N``. "cold" includes starting
the Ray worker processes (each imports torch); "warm" reruns on the same workers into a fresh folder.
Run: python bench/bench_batch.py [--meshes 12] [--resolution 48] [--steps 0]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import trimesh
from threadpoolctl import threadpool_limits

from sa3df.batch import plan_batch, run_batch
from sa3df.batch.tasks import compute_group
from sa3df.core.files import load_mesh
from sa3df.examples import humanoid
from sa3df.features.pipeline import compute_surface_features
from sa3df.features.settings import FeatureSettings


def write_meshes(folder: Path, count: int, resolution: int) -> list[Path]:
    poses = ("rest", "walk", "crouch")
    characters = {pose: humanoid(pose, resolution=resolution).mesh for pose in poses}
    paths = []
    for i in range(count):
        mesh = characters[poses[i % 3]]
        path = folder / f"{i:03d}_{poses[i % 3]}.ply"
        # Each file moved a little, so no two share a cache entry or an output.
        trimesh.Trimesh(mesh.vertices + 1e-3 * i, mesh.faces, process=False).export(path)
        paths.append(path)
    return paths


def timed_batch(source: Path, out: Path, features: FeatureSettings) -> float:
    start = time.perf_counter()
    summary = run_batch(plan_batch(source, out, features), features)
    if summary.failed or summary.skipped:
        raise RuntimeError(f"bench batch did not compute every mesh: {summary.text()}")
    return time.perf_counter() - start


def main() -> int:
    import ray

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meshes", type=int, default=12)
    parser.add_argument("--resolution", type=int, default=48)
    parser.add_argument("--steps", type=int, default=0, help="0: embed with a checkpoint; N: train N steps per mesh")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sa3df-bench-batch-"))
    (work / "meshes").mkdir()
    paths = write_meshes(work / "meshes", args.meshes, args.resolution)
    network = work / "network"
    compute_surface_features([load_mesh(paths[0])], FeatureSettings(steps=20)).save(network)
    features = FeatureSettings(checkpoint=network if args.steps == 0 else None, steps=args.steps, device="cpu")
    vertices = load_mesh(paths[0]).n_vertices
    print(f"{args.meshes} meshes of ~{vertices} vertices, {'embed with a checkpoint' if args.steps == 0 else f'{args.steps} training steps each'}")
    print(f"{'run':<28}{'seconds':>9}{'meshes/min':>12}")

    compute_group([str(paths[0])], features, cpu_threads=1)  # imports and first calls, as a warm worker has done
    # One BLAS/OpenMP thread, as Ray gives a 1-CPU task (OMP_NUM_THREADS=1): on a busy CPU the default
    # threads wait on each other (measured 2.5-5x slower here), which would flatter Ray.
    with threadpool_limits(1):
        start = time.perf_counter()
        for path in paths:
            compute_group([str(path)], features, cpu_threads=1)
        row("1 process, no Ray", time.perf_counter() - start, args.meshes)
    for workers in (1, 2):
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        try:
            for run in ("cold", "warm"):
                seconds = timed_batch(work / "meshes", work / f"out_{workers}_{run}", features)
                row(f"Ray, {workers} worker{'s' if workers > 1 else ''}, {run}", seconds, args.meshes)
        finally:
            ray.shutdown()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (a shared machine inflates every time)")
    return 0


def row(label: str, seconds: float, count: int) -> None:
    print(f"{label:<28}{seconds:>9.1f}{60.0 * count / seconds:>12.1f}")


if __name__ == "__main__":
    sys.exit(main())
