"""The default path a new user takes: `sa3df features a.ply b.ply` on two 5k-vertex meshes.

Meshes: the Poly Haven horse statue simplified to 5,000 vertices (quadric collapse, as the proxy
does), and the same mesh turned 90° about its up axis (another pose for the extrinsic features, and
another cache key). Each run is a fresh process with an empty cache, so wall time includes start-up,
base features, anchors, training and writing. With ``--baseline REPO`` the same command also runs
from another checkout (e.g. the main branch before this change) and the ratio is printed.

Run: python bench/bench_default_pair.py [--baseline /path/to/other/checkout] [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))
DATA = Path(os.environ.get("SA3DF_DATA", ROOT.parent / "shared" / "data"))


def write_pair(folder: Path) -> list[Path]:
    import trimesh

    from sa3df.core.mesh import from_arrays, load
    from sa3df.features.proxy import _simplified

    horse = load(DATA / "meshes" / "polyhaven" / "horse_statue_01_1k.obj")
    m = from_arrays(*_simplified(horse, 5000), name="horse")
    turned = m.vertices @ np.array([[0.0, 0, 1], [0, 1, 0], [-1, 0, 0]]).T
    paths = []
    for name, vertices in (("horse_a", m.vertices), ("horse_b", turned)):
        paths.append(folder / f"{name}.ply")
        trimesh.Trimesh(vertices, m.faces, process=False).export(paths[-1])
    return paths


def run(repo: Path, meshes: list[Path], work: Path) -> dict:
    """One `sa3df features` run from ``repo``: wall and CPU seconds, peak RSS."""
    out, cache = Path(tempfile.mkdtemp(dir=work)), Path(tempfile.mkdtemp(dir=work))
    env = dict(os.environ, PYTHONPATH=str(repo / "backend"))
    command = [sys.executable, "-m", "sa3df.cli", "features", *map(str, meshes), "--out", str(out),
               "--cache", str(cache)]
    t0 = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status):
        raise RuntimeError(f"sa3df features failed from {repo}:\n{process.stderr.read().decode()[-2000:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss": usage.ru_maxrss / 1024}


def effort_table(meshes: list[Path]) -> None:
    """Seconds of each add-on effort level on the pair, in this process (torch already imported, base
    features and anchors cached after the first call): wall and CPU seconds (CPU counts every thread)."""
    from sa3df.core.mesh import load
    from sa3df.features.pipeline import PipelineCaches, compute_surface_features
    from sa3df.features.settings import EFFORT_STEPS, FeatureSettings

    pair = [load(p) for p in meshes]
    caches = PipelineCaches.in_folder(None)  # base features and anchors are kept; results are not reused:
    wall, cpu = time.perf_counter(), time.process_time()
    compute_surface_features(pair, FeatureSettings(steps=1), caches=caches)
    print(f"\neffort levels (add-on), this checkout: base features + anchors {time.perf_counter() - wall:.1f} s "
          f"wall ({time.process_time() - cpu:.1f} CPU s), then training")
    for effort, steps in EFFORT_STEPS.items():
        if steps:
            wall, cpu = time.perf_counter(), time.process_time()
            compute_surface_features(pair, FeatureSettings(steps=steps), caches=caches)
            print(f"  {effort:9s} {steps:5d} steps  {time.perf_counter() - wall:6.1f} s wall "
                  f"({time.process_time() - cpu:5.1f} CPU s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="another checkout to compare with")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sa3df-pair-") as tmp:
        work = Path(tmp)
        meshes = write_pair(work)
        print(f"two meshes of {5000} target vertices (horse statue); {os.cpu_count()} CPUs, load average "
              f"{os.getloadavg()[0]:.1f} at start (a shared machine inflates wall time)")
        print(f"{'checkout':40s} {'wall s':>7s} {'CPU s':>7s} {'peak RSS':>9s}")
        results = {}
        for label, repo in (("this checkout", ROOT), ("baseline " + str(args.baseline), args.baseline)):
            if repo is None:
                continue
            for _ in range(args.repeat):
                r = run(repo, meshes, work)
                results.setdefault(label, []).append(r)
                print(f"{label:40s} {r['wall']:7.1f} {r['cpu']:7.1f} {r['rss']:6.0f} MB", flush=True)
        if len(results) == 2:
            ours, base = (min(v, key=lambda r: r["wall"]) for v in results.values())
            print(f"\nbaseline / this checkout: wall {base['wall'] / ours['wall']:.1f}x, "
                  f"CPU {base['cpu'] / ours['cpu']:.1f}x (best of {args.repeat})")
        effort_table(meshes)


if __name__ == "__main__":
    main()
