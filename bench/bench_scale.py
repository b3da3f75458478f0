"""Scale: `sa3df features` on meshes of ~5k to ~1M vertices, and proxy quality against full resolution.

Meshes: the quaternius fox (Walk frame 2, posed by Blender, welded: 926 vertices) Loop-subdivided
once (3.7k) and then split 4-to-1 (59k, 237k, 947k), and UV spheres of about 5k, 50k, 200k and 1M
vertices. Each size runs `sa3df features MESH --out DIR --cache DIR` (default settings: geometric
features, test-time training, proxy of 6,000 vertices above 7,500) in a fresh process, so wall time
includes start-up, mesh loading and writing; peak RSS is that process's maximum resident memory.

Quality: frames 2 and 14 of the fox, at 3.7k and 59k vertices (the same topology in both frames, so
vertex i matches vertex i), computed together with the default proxy and at full resolution
(proxy off); score = mean geodesic error (/√area) on frame 14 of the nearest-feature matches of 2,000
random frame-2 vertices. Run: python bench/bench_scale.py [--no-1m]. Needs bpy and the shared data.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "backend"), str(ROOT), str(ROOT / "tests")]
SPHERE_SIDES = {"5k": 50, "50k": 158, "200k": 316, "1M": 707}  # UV sphere of about 2·side² vertices


def fox_frames(levels: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(vertices, faces) of fox Walk frames 2 and 14, Loop-subdivided once, then split ``levels - 1`` times."""
    import trimesh

    from bench_train import fox_frames as loop_subdivided

    meshes = loop_subdivided()
    out = []
    for m in meshes:
        v, f = m.vertices, m.faces
        for _ in range(levels - 1):
            v, f = trimesh.remesh.subdivide(v, f)
        out.append((v, f))
    return out


def sphere(side: int) -> tuple[np.ndarray, np.ndarray]:
    import trimesh

    s = trimesh.creation.uv_sphere(radius=1.0, count=[side, side])
    return s.vertices, s.faces


def run_cli(mesh_path: Path, work: Path) -> dict:
    """`sa3df features` in a fresh process: wall seconds, peak RSS, archive and cache bytes."""
    out, cache = work / "out", work / "cache"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "backend"))
    t0 = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "sa3df.cli", "features", str(mesh_path), "--out", str(out),
                                "--cache", str(cache)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - t0
    stderr = process.stderr.read().decode()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise RuntimeError(f"sa3df features failed on {mesh_path.name}:\n{stderr[-2000:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss": usage.ru_maxrss * 1024, "archive": _size(out, "*.npz"), "cache": _size(cache, "*")}


def _size(folder: Path, pattern: str) -> int:
    return sum(p.stat().st_size for p in folder.rglob(pattern) if p.is_file())


def scale_table(sizes: list[str], work: Path) -> None:
    import trimesh

    print(f"{'mesh':14s} {'vertices':>9s} {'wall s':>7s} {'CPU s':>7s} {'peak RSS':>9s} {'archive':>9s} {'cache':>9s}")
    fox_levels = {"5k": 1, "50k": 3, "200k": 4, "1M": 5}
    for size in sizes:
        for name, (v, f) in (("fox", fox_frames(fox_levels[size])[0]), ("uv sphere", sphere(SPHERE_SIDES[size]))):
            folder = Path(tempfile.mkdtemp(dir=work))
            path = folder / f"{name.replace(' ', '_')}_{size}.ply"
            trimesh.Trimesh(v, f, process=False).export(path)
            r = run_cli(path, folder)
            print(f"{name + ' ' + size:14s} {len(v):9d} {r['wall']:7.1f} {r['cpu']:7.1f} {_mb(r['rss']):>9s} "
                  f"{_mb(r['archive']):>9s} "
                  f"{_mb(r['cache']):>9s}", flush=True)


def _mb(n: int) -> str:
    return f"{n / 2**20:.0f} MB" if n < 2**30 else f"{n / 2**30:.2f} GB"


def quality_table() -> None:
    from sa3df.apps.evaluate import geodesic_errors
    from sa3df.apps.match import nearest_neighbors
    from sa3df.core.geodesics import GeodesicSolver
    from sa3df.core.mesh import from_arrays
    from sa3df.features.pipeline import compute_surface_features
    from sa3df.features.settings import FeatureSettings

    print(f"\n{'fox frames 2 -> 14':20s} {'vertices':>9s} {'mode':>22s} {'seconds':>8s} {'error':>8s}")
    for levels in (1, 3):
        (va, f), (vb, _) = fox_frames(levels)
        a, b = from_arrays(va, f, name="fox_a"), from_arrays(vb, f, name="fox_b")
        sources = np.random.default_rng(0).choice(a.n_vertices, size=min(2000, a.n_vertices), replace=False)
        truth = b.input_to_clean[a.input_index[sources]]
        solver = GeodesicSolver(b)
        errors = {}
        for mode, proxy in (("proxy 6000 (default)", 6000), ("full resolution", 0)):
            t0 = time.perf_counter()
            result = compute_surface_features([a, b], FeatureSettings(proxy_vertices=proxy))
            seconds = time.perf_counter() - t0
            predicted, _ = nearest_neighbors(result.features[0].embedding[sources], result.features[1].embedding)
            errors[mode] = float(geodesic_errors(b, predicted, truth, solver=solver).mean())
            print(f"{'':20s} {a.n_vertices:9d} {mode:>22s} {seconds:8.1f} {errors[mode]:8.4f}", flush=True)
        ratio = errors["proxy 6000 (default)"] / errors["full resolution"]
        print(f"{'':20s} {'':9s} {'proxy / full':>22s} {'':8s} {ratio:8.2f}")


def main() -> None:
    from blender_scene import sandbox_blender_user

    sandbox_blender_user("sa3df-bench-")
    sizes = ["5k", "50k", "200k"] + ([] if "--no-1m" in sys.argv else ["1M"])
    print(f"machine: {os.cpu_count()} CPUs (may be shared with other jobs: times are upper bounds)\n")
    with tempfile.TemporaryDirectory(prefix="sa3df-scale-") as work:
        scale_table(sizes, Path(work))
    quality_table()


if __name__ == "__main__":
    main()
