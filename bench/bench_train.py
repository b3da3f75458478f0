"""Training-step benchmark: sa3df's step vs a faithful re-implementation of the reference step.

Reference step (method.md §2): 100 geodesic farthest-point anchors from a random start, each a heat
solve (potpourri3d, solver factorised once per mesh as the reference caches it), D̂ = D / max D,
all vertices through the network, loss = L_rec + 2·L_con (the doubling bug), AdamW lr 1e-4.
sa3df step: anchors sampled from a pool built once, 1024 vertices, L_rec + L_con, its defaults.

Both train the same network on the same real mesh (Poly Haven horse statue, decimated by Blender to
about 5k vertices, largest component) with geometric base features, for the same wall time; the
printed loss is the same undoubled L_rec + L_con on all vertices and a fixed set of 100 farthest-point
anchors, measured after training (not timed). Torch runs on one CPU thread for both, so the figures
hold on a shared machine. Run: python bench/bench_train.py [seconds per method, default 20]
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))

from sa3df.core import geodesics  # noqa: E402
from sa3df.features.extractors import create_extractor  # noqa: E402
from sa3df.core.mesh import Mesh, from_arrays, load  # noqa: E402
from sa3df.features.network import NetworkConfig, SurfaceNetwork  # noqa: E402
from sa3df.features.train import TrainConfig, TrainingSample, surface_losses, train_surface_network  # noqa: E402

DATA = Path(os.environ.get("SA3DF_DATA", ROOT.parent / "shared" / "data"))
TARGET_VERTICES = 5000


def bench_mesh() -> Mesh:
    """The horse statue, decimated with Blender's Decimate (collapse) when bpy is present."""
    horse = load(DATA / "meshes" / "polyhaven" / "horse_statue_01_1k.obj")
    vertices, faces = horse.vertices, horse.faces
    try:
        vertices, faces = _blender_decimate(vertices, faces, TARGET_VERTICES / len(vertices))
    except ImportError:
        print("(bpy not installed: using the full-resolution statue)")
    m = from_arrays(vertices, faces, name="horse_statue")
    component = m.components()
    keep = np.bincount(component).argmax()
    used = np.flatnonzero(component == keep)
    remap = np.full(m.n_vertices, -1)
    remap[used] = np.arange(len(used))
    tris = remap[m.faces[component[m.faces[:, 0]] == keep]]
    return from_arrays(m.vertices[used], tris, name="horse_statue")


def _blender_decimate(vertices, faces, ratio):
    import os
    import tempfile

    os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="sa3df-bench-blender-"))
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    data = bpy.data.meshes.new("statue")
    data.from_pydata(vertices.tolist(), [], faces.tolist())
    obj = bpy.data.objects.new("statue", data)
    bpy.context.scene.collection.objects.link(obj)
    obj.modifiers.new("decimate", "DECIMATE").ratio = ratio
    evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    out = evaluated.to_mesh()
    out.calc_loop_triangles()
    v = np.empty(len(out.vertices) * 3)
    out.vertices.foreach_get("co", v)
    t = np.empty(len(out.loop_triangles) * 3, dtype=np.int64)
    out.loop_triangles.foreach_get("vertices", t)
    evaluated.to_mesh_clear()
    return v.reshape(-1, 3), t.reshape(-1, 3)


def reference_anchors(solver, n: int, count: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """The reference's per-step sampling: FPS by heat distance from a random start; D̂ = D / max D."""
    anchors, columns = np.empty(count, dtype=np.int64), np.empty((n, count))
    nearest, current = np.full(n, np.inf), int(rng.integers(n))
    for k in range(count):
        anchors[k] = current
        columns[:, k] = solver.compute_distance(current)
        nearest = np.minimum(nearest, columns[:, k])
        current = int(np.argmax(nearest))
    return anchors, (columns / columns.max()).astype(np.float32)


def run_reference(mesh: Mesh, features: np.ndarray, seconds: float) -> tuple[SurfaceNetwork, int, float]:
    """Train with reference steps for ``seconds``. Returns (network, steps, seconds of heat solves)."""
    import potpourri3d as pp3d

    solver = pp3d.MeshHeatMethodDistanceSolver(mesh.vertices, mesh.faces)
    torch.manual_seed(0)
    network = SurfaceNetwork(NetworkConfig.for_input_dim(features.shape[1]))
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-4)
    F = torch.from_numpy(features / np.linalg.norm(features, axis=1, keepdims=True))
    every_vertex = torch.arange(mesh.n_vertices)
    rng, steps, solve_time = np.random.default_rng(0), 0, 0.0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        anchors, distances = reference_anchors(solver, mesh.n_vertices, 100, rng)
        solve_time += time.perf_counter() - t0
        rec, con = surface_losses(network, F, every_vertex, torch.from_numpy(anchors), torch.from_numpy(distances))
        loss = rec + 2.0 * con  # train_feature_network.py:166-167
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        steps += 1
    return network, steps, solve_time


def run_ours(mesh, features, seconds, **overrides) -> tuple[SurfaceNetwork, int, float, float]:
    """sa3df's trainer within ``seconds`` including its anchor pool. Returns (net, steps, train s, pool s)."""
    cache = geodesics.AnchorCache()
    t0 = time.perf_counter()
    cache.get(mesh, TrainConfig().anchor_pool_size, 0)
    pool_time = time.perf_counter() - t0
    sample = [TrainingSample(mesh, features)]
    probe = dict(steps=30, device="cpu", cpu_threads=1)
    t0 = time.perf_counter()
    train_surface_network(sample, TrainConfig(**probe), anchor_cache=cache, progress=_quiet)
    rate = 30 / (time.perf_counter() - t0)
    budget = seconds - pool_time
    settings = dict(steps=max(int(rate * budget), 1), device="cpu", cpu_threads=1, max_seconds=budget)
    settings.update(overrides)
    t0 = time.perf_counter()
    result = train_surface_network(sample, TrainConfig(**settings), anchor_cache=cache, progress=_quiet)
    return result.network, result.steps_done, time.perf_counter() - t0, pool_time


def _quiet(fraction, message):
    pass


def evaluation_loss(network, features, anchors, distances) -> tuple[float, float, float]:
    """Undoubled (L_rec + L_con, L_rec, L_con) on every vertex against fixed anchors."""
    F = torch.from_numpy(features / np.linalg.norm(features, axis=1, keepdims=True))
    with torch.no_grad():
        rec, con = surface_losses(network.eval(), F, torch.arange(len(F)), torch.from_numpy(anchors),
                                  torch.from_numpy(distances))
    return float(rec + con), float(rec), float(con)


def main(seconds: float = 20.0) -> None:
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    mesh = bench_mesh()
    features = create_extractor("geometric").extract(mesh)
    fixed = geodesics.farthest_point_anchors(mesh, 100, seed=12345)
    print(f"mesh: horse statue, {mesh.n_vertices} vertices, {len(mesh.faces)} faces; "
          f"geometric features {features.shape[1]}-d; network {NetworkConfig.for_input_dim(features.shape[1]).widths}"
          f" (setup {time.perf_counter() - t0:.1f} s)")
    print(f"equal wall time per method: {seconds:.0f} s; torch on 1 CPU thread\n")

    ref_net, ref_steps, ref_solves = run_reference(mesh, features, seconds)
    ours_net, ours_steps, ours_time, pool_time = run_ours(mesh, features, seconds)
    slow_net, slow_steps, slow_time, _ = run_ours(mesh, features, seconds, lr=1e-4, lr_warmup_steps=0,
                                                  lr_schedule="constant")
    ref_rate, ours_rate, slow_rate = ref_steps / seconds, ours_steps / ours_time, slow_steps / slow_time
    rows = [
        ("reference step (100 heat solves, all vertices)", ref_steps, ref_rate, evaluation_loss(ref_net, features, fixed.anchors, fixed.distances)),
        ("sa3df step, sa3df defaults (lr 1e-3 cosine)", ours_steps, ours_rate, evaluation_loss(ours_net, features, fixed.anchors, fixed.distances)),
        ("sa3df step, paper optimiser (lr 1e-4 constant)", slow_steps, slow_rate, evaluation_loss(slow_net, features, fixed.anchors, fixed.distances)),
    ]
    print(f"{'method':50s} {'steps':>7s} {'steps/s':>8s} {'L_rec+L_con':>12s} {'L_rec':>8s} {'L_con':>8s}")
    for name, steps, rate, (total, rec, con) in rows:
        print(f"{name:50s} {steps:7d} {rate:8.2f} {total:12.4f} {rec:8.4f} {con:8.4f}")
    print(f"\nreference: {100 * ref_solves / seconds:.0f}% of its time in heat solves")
    print(f"sa3df: anchor pool (128 heat solves, once per mesh) took {pool_time:.2f} s of its {seconds:.0f} s")
    print(f"step-rate ratio sa3df / reference: {ours_rate / ref_rate:.1f}x")
    print(f"loss after {seconds:.0f} s: reference {rows[0][3][0]:.4f}, sa3df {rows[1][3][0]:.4f} "
          f"({rows[0][3][0] / rows[1][3][0]:.2f}x lower)")


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 20.0)
