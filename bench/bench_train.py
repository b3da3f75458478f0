"""Time-to-quality: the reference's training recipe vs sa3df's, on the same two meshes, in one run.

Meshes: two frames (2 and 14) of the quaternius fox's Walk action, posed by Blender, welded (926
vertices) and Loop-subdivided once (3,698 vertices, the same topology in both frames), so vertex i of
one frame is the true match of vertex i of the other. Both recipes train the same network on
geometric base features of both frames.

- Reference recipe (method.md §2): each step one mesh (uniform), 100 geodesic farthest-point anchors
  from a random start, each a heat solve (potpourri3d, factorised once per mesh as the reference
  caches it), D̂ = D / max D, all vertices through the network, loss L_rec + 2·L_con (the doubling
  bug), AdamW lr 1e-4. It runs for a wall-time budget; its quality is measured every few seconds
  (the clock stops while measuring).
- sa3df recipe: ``train_surface_network`` with the default ``TrainConfig`` at several step counts,
  each run from scratch with its own schedule; the time includes building the anchor pools.

Quality: (1) the loss L_rec + L_con (undoubled) on every vertex of both frames against fixed 100
farthest-point anchors; (2) the correspondence error: mean geodesic distance (/√area) on frame 14
between each frame-2 vertex's nearest-feature match and its true match. The table gives, for each
target quality, the time each recipe needed to reach it and the ratio. Torch runs on one CPU
thread for both and times are the process's CPU seconds (equal to wall seconds on an idle machine),
so the ratio holds on a shared machine.

Run: python bench/bench_train.py [reference budget in seconds, default 240]. Needs bpy and the data.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "backend"), str(ROOT), str(ROOT / "tests")]

from sa3df.apps.match import nearest_neighbors  # noqa: E402
from sa3df.core import geodesics  # noqa: E402
from sa3df.core.mesh import Mesh, from_arrays  # noqa: E402
from sa3df.features.extractors import create_extractor  # noqa: E402
from sa3df.features.network import NetworkConfig, SurfaceNetwork  # noqa: E402
from sa3df.features.train import TrainConfig, TrainingSample, surface_losses, train_surface_network  # noqa: E402

FRAMES = (2, 14)
OURS_STEPS = (10, 25, 50, 75, 100, 150, 200, 300, 600)  # 600: the default
EVAL_EVERY_S = 10.0


def fox_frames() -> list[Mesh]:
    """Frames 2 and 14 of the fox's Walk, world space, welded and Loop-subdivided once."""
    from blender_scene import sandbox_blender_user

    sandbox_blender_user("sa3df-bench-")
    from conftest import find_data_dir
    from motion_scenes import load_character

    data = find_data_dir()
    if data is None:
        sys.exit("shared data not found: set SA3DF_DATA")
    fox = load_character(str(data / "quadrupeds" / "quaternius_fox.glb"), "Walk")
    import trimesh

    welded = [from_arrays(fox.clip[f], fox.rig.faces, name=f"fox_{f}") for f in FRAMES]
    assert (welded[0].input_to_clean == welded[1].input_to_clean).all(), "the frames must weld alike"
    smooth = [trimesh.remesh.subdivide_loop(m.vertices, welded[0].faces) for m in welded]
    return [from_arrays(v, f, name=m.name) for (v, f), m in zip(smooth, welded)]


class Quality:
    """Measures a network: evaluation loss on both meshes and the frame-to-frame correspondence error."""

    def __init__(self, meshes: list[Mesh], features: list[np.ndarray]):
        self.units = [torch.from_numpy(f / np.linalg.norm(f, axis=1, keepdims=True)) for f in features]
        self.fixed = [geodesics.farthest_point_anchors(m, 100, seed=12345) for m in meshes]
        source, target = meshes
        self.truth = target.input_to_clean[source.input_index]
        solver = geodesics.GeodesicSolver(target)
        # the target's whole geodesic table once (float32), so each measurement is a lookup
        self.table = np.stack([solver.distances_from(i) for i in range(target.n_vertices)]).astype(np.float32)
        self.scale = float(np.sqrt(target.surface_area()))

    def __call__(self, network: SurfaceNetwork) -> tuple[float, float]:
        network.eval()
        losses, embeddings = [], []
        with torch.no_grad():
            for units, pool in zip(self.units, self.fixed):
                rec, con = surface_losses(network, units, torch.arange(len(units)), torch.from_numpy(pool.anchors),
                                          torch.from_numpy(pool.distances))
                losses.append(float(rec + con))
                embeddings.append(network.encode(units).numpy())
        network.train()
        predicted, _ = nearest_neighbors(embeddings[0], embeddings[1])
        error = float(self.table[predicted, self.truth].mean()) / self.scale
        return float(np.mean(losses)), error


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


def run_reference(meshes, quality: Quality, budget: float) -> list[tuple[float, int, float, float]]:
    """Reference steps for ``budget`` seconds of training; returns (seconds, steps, loss, error) checkpoints."""
    import potpourri3d as pp3d

    t0 = time.process_time()
    solvers = [pp3d.MeshHeatMethodDistanceSolver(m.vertices, m.faces) for m in meshes]
    torch.manual_seed(0)
    network = SurfaceNetwork(NetworkConfig.for_input_dim(quality.units[0].shape[1]))
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-4)
    rng, steps, clock = np.random.default_rng(0), 0, time.process_time() - t0
    curve, next_eval = [], EVAL_EVERY_S
    while clock < budget:
        t0 = time.process_time()
        i = int(rng.integers(len(meshes)))
        anchors, distances = reference_anchors(solvers[i], meshes[i].n_vertices, 100, rng)
        every_vertex = torch.arange(meshes[i].n_vertices)
        rec, con = surface_losses(network, quality.units[i], every_vertex, torch.from_numpy(anchors),
                                  torch.from_numpy(distances))
        loss = rec + 2.0 * con  # train_feature_network.py:166-167
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        steps += 1
        clock += time.process_time() - t0
        if clock >= next_eval or clock >= budget:
            curve.append((clock, steps, *quality(network)))
            next_eval += EVAL_EVERY_S
    return curve


def run_ours(meshes, features, quality: Quality) -> list[tuple[float, int, float, float]]:
    """sa3df's default recipe at each of OURS_STEPS, from scratch; (seconds incl. anchor pools, steps, loss, error)."""
    samples = [TrainingSample(m, f) for m, f in zip(meshes, features)]
    rows = []
    for steps in OURS_STEPS:
        t0 = time.process_time()
        result = train_surface_network(samples, TrainConfig(steps=steps, device="cpu", cpu_threads=1),
                                       anchor_cache=geodesics.AnchorCache(), progress=_quiet)
        rows.append((time.process_time() - t0, steps, *quality(result.network)))
    return rows


def _quiet(fraction, message):
    pass


def first_reaching(curve, column: int, target: float) -> tuple[float, int] | None:
    """(seconds, steps) of the first checkpoint whose ``column`` (2 loss, 3 error) is at most ``target``."""
    for row in curve:
        if row[column] <= target:
            return row[0], row[1]
    return None


def print_table(reference, ours) -> None:
    print(f"{'recipe':34s} {'steps':>6s} {'CPU s':>8s} {'loss':>8s} {'error':>8s}")
    for name, curve in (("reference (checkpoints)", reference), ("sa3df default, N steps", ours)):
        for seconds, steps, loss, error in curve:
            print(f"{name:34s} {steps:6d} {seconds:8.1f} {loss:8.4f} {error:8.4f}")
    final = reference[-1]
    best = ours[-1]
    print("\ntime to quality (CPU seconds on 1 thread; ratio = reference / sa3df)")
    print(f"{'target':44s} {'reference':>12s} {'sa3df':>12s} {'ratio':>8s}")
    targets = [("reference's final loss", 2, final[2]), ("reference's final error", 3, final[3]),
               (f"sa3df's loss at {best[1]} steps", 2, best[2]), (f"sa3df's error at {best[1]} steps", 3, best[3])]
    for name, column, target in targets:
        ref, mine = first_reaching(reference, column, target), first_reaching(ours, column, target)
        ref_text = f"{ref[0]:.1f} s" if ref else f"> {final[0]:.0f} s"
        mine_text = f"{mine[0]:.1f} s" if mine else "not reached"
        ratio = (f"{ref[0] / mine[0]:.0f}x" if ref else f"> {final[0] / mine[0]:.0f}x") if mine else "-"
        print(f"{name + f' {target:.4f}':44s} {ref_text:>12s} {mine_text:>12s} {ratio:>8s}")


def main(budget: float = 240.0) -> None:
    torch.set_num_threads(1)
    meshes = fox_frames()
    extractor = create_extractor("geometric")
    features = [extractor.extract(m) for m in meshes]
    quality = Quality(meshes, features)
    base_matches, _ = nearest_neighbors(features[0], features[1])
    base_error = float(quality.table[base_matches, quality.truth].mean()) / quality.scale
    print(f"meshes: quaternius fox, Walk frames {FRAMES[0]} and {FRAMES[1]}, {meshes[0].n_vertices} vertices each; "
          f"geometric features {features[0].shape[1]}-d (base-feature error {base_error:.4f})")
    print(f"reference budget {budget:.0f} CPU s; torch on 1 CPU thread; the machine may be shared (CPU times hold)\n")
    reference = run_reference(meshes, quality, budget)
    ours = run_ours(meshes, features, quality)
    print_table(reference, ours)


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 240.0)
