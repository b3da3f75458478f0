"""Throughput of ``sa3df batch`` on a local Ray: meshes per minute with 1 and 2 workers, against the same
meshes computed one after another in this process (no Ray, one BLAS thread, after an untimed warm-up).

Two workloads, one task per mesh, nothing cached (base features computed every time):
"embed": geometric base features + embedding with a checkpoint (``--steps 0``);
"train": the same plus test-time training of ``--train-steps`` steps on each mesh alone.
"cold" includes starting the Ray worker processes (each imports torch); "warm" reruns on the same
workers into a fresh folder. On a shared 2-core machine the second worker only helps as far as the
other processes leave a core free. Run: python bench/bench_batch.py [--meshes 8] [--resolution 64]
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


def bench_workload(name: str, work: Path, paths: list[Path], features: FeatureSettings) -> None:
    import ray

    compute_group([str(paths[0])], features, cpu_threads=1)  # imports and first calls, as a warm worker has done
    # One BLAS/OpenMP thread, as Ray gives a 1-CPU task (OMP_NUM_THREADS=1): on a busy CPU the default
    # threads wait on each other (measured 2.5-5x slower here), which would flatter Ray.
    with threadpool_limits(1):
        start = time.perf_counter()
        for path in paths:
            compute_group([str(path)], features, cpu_threads=1)
        row(name, "1 process, no Ray", time.perf_counter() - start, len(paths))
    for workers in (1, 2):
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        try:
            for run in ("cold", "warm"):
                seconds = timed_batch(paths[0].parent, work / f"out_{name}_{workers}_{run}", features)
                row(name, f"Ray, {workers} worker{'s' if workers > 1 else ''}, {run}", seconds, len(paths))
        finally:
            ray.shutdown()


def row(workload: str, label: str, seconds: float, count: int) -> None:
    print(f"{workload:<8}{label:<26}{seconds:>9.1f}{60.0 * count / seconds:>12.1f}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meshes", type=int, default=8)
    parser.add_argument("--resolution", type=int, default=64, help="64: about 4k vertices per mesh")
    parser.add_argument("--train-steps", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sa3df-bench-batch-") as folder:
        work = Path(folder)
        (work / "meshes").mkdir()
        paths = write_meshes(work / "meshes", args.meshes, args.resolution)
        network = work / "network"
        compute_surface_features([load_mesh(paths[0])], FeatureSettings(steps=20, device="cpu")).save(network)
        print(f"{args.meshes} meshes of {load_mesh(paths[0]).n_vertices} vertices; embed with a checkpoint, "
              f"or train {args.train_steps} steps per mesh")
        print(f"{'':<8}{'run':<26}{'seconds':>9}{'meshes/min':>12}")
        bench_workload("embed", work, paths, FeatureSettings(checkpoint=network, steps=0, device="cpu"))
        bench_workload("train", work, paths, FeatureSettings(steps=args.train_steps, device="cpu"))
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (a shared machine inflates every time)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
