"""Benchmark: chunked feature matching vs a naive full-matrix argmax (and with the rest-pose prior), and
joint k-means.

Run: python bench/bench_match.py. Each matcher runs in its own child process so peak memory is
measured cleanly: torch's allocations are invisible to tracemalloc, so we read the kernel's peak
resident set (VmHWM in /proc/self/status) after the inputs exist and after matching.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

N, E, SEED = 10_000, 256, 0


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _inputs():
    import torch

    g = torch.Generator().manual_seed(SEED)
    return torch.randn(N, E, generator=g), torch.randn(N, E, generator=g)


def worker(kind: str) -> dict:
    import torch

    from sa3df.apps import match

    query, reference = _inputs()
    before = _peak_rss_mb()
    start = time.perf_counter()
    if kind == "chunked":
        idx, _ = match.nearest_neighbors(query, reference, device="cpu")
    elif kind == "prior":  # same features, plus a spatial bonus on random points (weight 0: same winners)
        g = torch.Generator().manual_seed(SEED + 1)
        points = torch.rand(2, N, 3, generator=g).numpy()
        idx, _ = match.nearest_neighbors(query, reference, device="cpu",
                                         proximity=match.RestProximity(points[0], points[1], weight=0.0))
    else:  # the reference implementation's way: the whole Nq×Nr cosine matrix, then argmax
        q = torch.nn.functional.normalize(query, dim=1)
        r = torch.nn.functional.normalize(reference, dim=1)
        idx = (q @ r.T).argmax(dim=1).numpy()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "extra_peak_mb": _peak_rss_mb() - before, "checksum": int(idx[:100].sum())}


def run_child(kind: str, repeats: int = 3) -> dict:
    """Median time and peak memory over ``repeats`` fresh child processes."""
    runs = []
    for _ in range(repeats):
        command = [sys.executable, __file__, "--worker", kind]
        out = subprocess.run(command, capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    median = {key: sorted(r[key] for r in runs)[len(runs) // 2] for key in ("seconds", "extra_peak_mb")}
    return {**median, "checksum": runs[0]["checksum"]}


def bench_kmeans() -> dict:
    """Our torch joint k-means vs scikit-learn's KMeans (the reference notebook's) on the same rows:
    time, and agreement (adjusted Rand index) of each with the clusters the data was drawn from."""
    import numpy as np
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    from sa3df.apps import segment

    rng = np.random.default_rng(SEED)
    centres = rng.normal(size=(8, E))
    truth = [rng.integers(0, 8, N) for _ in range(2)]
    meshes = [centres[t] + rng.normal(scale=0.5, size=(N, E)) for t in truth]
    start = time.perf_counter()
    labels, _ = segment.joint_kmeans(meshes, k=8, seed=0, device="cpu")
    ours = time.perf_counter() - start
    stacked = np.concatenate(meshes)
    stacked /= np.linalg.norm(stacked, axis=1, keepdims=True)  # same input as ours (unit rows)
    start = time.perf_counter()
    reference = KMeans(n_clusters=8, random_state=0, n_init="auto").fit_predict(stacked)
    theirs = time.perf_counter() - start
    truth = np.concatenate(truth)
    return {"ours": ours, "sklearn": theirs, "ari_ours": adjusted_rand_score(truth, np.concatenate(labels)),
            "ari_sklearn": adjusted_rand_score(truth, reference)}


def main() -> None:
    from sa3df.apps import match

    chunked, naive, prior = run_child("chunked"), run_child("naive"), run_child("prior")
    assert chunked["checksum"] == naive["checksum"] == prior["checksum"], "the matchers disagree"
    budget_mb = match.auto_chunk_size(N) * N * 4 / 2**20
    print(f"matching {N}x{N}, E={E}, torch CPU (median of 3 fresh processes each)")
    print(f"  chunked  : {chunked['seconds']:.3f} s, extra peak RSS {chunked['extra_peak_mb']:.0f} MB "
          f"(similarity chunk {budget_mb:.0f} MB)")
    print(f"  naive    : {naive['seconds']:.3f} s, extra peak RSS {naive['extra_peak_mb']:.0f} MB "
          f"(full matrix {N * N * 4 / 2**20:.0f} MB)")
    print(f"  with rest prior: {prior['seconds']:.3f} s, extra peak RSS {prior['extra_peak_mb']:.0f} MB "
          f"(time ratio to chunked {prior['seconds'] / chunked['seconds']:.2f})")
    print(f"  time ratio chunked/naive  : {chunked['seconds'] / naive['seconds']:.2f}")
    print(f"  memory ratio chunked/naive: {chunked['extra_peak_mb'] / max(naive['extra_peak_mb'], 1e-9):.2f}")
    km = bench_kmeans()
    print(f"joint k-means k=8 on 2x{N}x{E}: ours {km['ours']:.2f} s (best of 3 greedy k-means++ runs), "
          f"sklearn KMeans(n_init='auto') {km['sklearn']:.2f} s, time ratio {km['ours'] / km['sklearn']:.2f}")
    print(f"  adjusted Rand index vs the true clusters: ours {km['ari_ours']:.3f}, sklearn {km['ari_sklearn']:.3f}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        print(json.dumps(worker(sys.argv[2])))
    else:
        main()
