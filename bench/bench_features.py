"""Base-feature extraction time per mesh (the offline geometric extractor) and the one-off geodesic
anchor pool each mesh needs for training. Prints a table; run: python bench/bench_features.py"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from sa3df import examples
from sa3df.core import mesh
from sa3df.features.extractors import create_extractor
from sa3df.core.geodesics import farthest_point_anchors

DATA = Path(os.environ.get("SA3DF_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def meshes():
    yield examples.humanoid("walk").mesh
    for path in sorted((DATA / "meshes" / "polyhaven").glob("*.obj")):
        yield mesh.load(path)
    for path in sorted((DATA / "quadrupeds").glob("*.glb")):
        yield mesh.load(path)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> int:
    if not DATA.exists():
        print(f"(no shared data at {DATA}: only the built-in character is measured)", file=sys.stderr)
    extractor = create_extractor("geometric")
    print(f"{'mesh':<34}{'vertices':>9}{'faces':>8}{'extract s':>11}{'anchors(128) s':>16}")
    for m in meshes():
        _, extract_s = timed(lambda: extractor.extract(m, progress=lambda *_: None))
        _, pool_s = timed(lambda: farthest_point_anchors(m, 128, progress=lambda *_: None))
        print(f"{m.name[:33]:<34}{m.n_vertices:>9}{len(m.faces):>8}{extract_s:>11.2f}{pool_s:>16.2f}")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
