"""Correspondence between different characters (and between frames of one), by body region.

For every pair of tests/cross_cases.py, the target at rest and posed (a frame of its own animation), every
method of ``METHODS`` maps the target's vertices to the source's. Printed per row: region accuracy (share
of target vertices matched into their own body region), left/right swap rate (sided regions matched into
the mirror region), the share of the wrong ones within one edge ring of another region (on edge: the rigs
disagreeing where a joint is), the share of the wrong ones on skin whose weights blend the two regions (on
blend: :func:`sa3df.apps.evaluate.blend_scores`, at least 30 % of the target vertex's weight in the region
it was matched to or of its match's in its own), the share of all target vertices matched more than two
edge rings (on the source) from their region (far off: the gross errors), for methods with features the
parts of Segment Parts (k = 8 on the source, left and right apart, carried to the target by the row's map:
:func:`sa3df.apps.limb_parts.carried_parts`) scored by their agreement (share of target vertices in the
part their region got on the source) and the share of left/right region pairs kept in different parts, and
the method's time. Frame-to-frame rows (one character, rest -> a frame; ground truth by vertex index) also
print the mean geodesic error (/ √area) and the left/right flip rate of sa3df.apps.evaluate.

A new method is one line: ``METHODS["new default"] = fn`` with ``fn(case) -> target_to_source (Nt,)``
(or ``(target_to_source, (source_features, target_features))`` to get the parts columns).

Run: python bench/bench_cross.py [--fast | --reversed] [--pairs A->B ...] [--methods NAME ...] (--reversed: the
pairs the other way round, e.g. the man walking as the target). Needs the shared data;
bpy only for the first run (the exported characters are cached, see tests/cross_cases.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "backend"), str(REPO), str(REPO / "tests")]

from blender_scene import sandbox_blender_user  # noqa: E402

sandbox_blender_user("sa3df-bench-")
import cross_cases  # noqa: E402  (after the path set-up)
import cross_methods  # noqa: E402

METHODS = dict(cross_cases.BASELINES)
METHODS.update(cross_methods.METHODS)  # the new default (sa3df.apps.landmarks) and its prior on base features
PART_COUNT = 8


def parts_columns(case, features, t2s: np.ndarray) -> dict:
    """Segment Parts' parts (k-means on the source, left and right apart, carried by the map ``t2s``),
    scored against the body regions."""
    from sa3df.apps import evaluate, limb_parts

    labels, _ = limb_parts.carried_parts(list(features), [case.source, case.target], PART_COUNT, up="z", seed=0,
                                      maps=[t2s])
    return evaluate.part_agreement(labels[0], labels[1], case.source_regions, case.target_regions, case.mirror)


def near_a_boundary(case, t2s: np.ndarray) -> float:
    """Share of the wrongly matched target vertices within one edge ring of a vertex of another region:
    how much of the error is the two rigs disagreeing about where a joint is."""
    from sa3df.apps.match import vertex_adjacency

    regions = case.target_regions
    adjacency = vertex_adjacency(case.target.faces, case.target.n_vertices)
    edges = adjacency.tocoo()
    border = np.zeros(len(regions), bool)
    np.logical_or.at(border, edges.row, regions[edges.row] != regions[edges.col])
    near = border | np.asarray(adjacency @ border > 0).ravel()
    wrong = (case.source_regions[t2s] != regions) & (regions >= 0)
    return float(near[wrong].mean()) if wrong.any() else float("nan")


def far_off(case, t2s: np.ndarray, rings: int = 2) -> float:
    """Share of the target's vertices (with a region) matched more than ``rings`` edge rings of the source
    away from every source vertex of their own region."""
    from scipy.sparse.csgraph import dijkstra

    from sa3df.apps.match import vertex_adjacency

    adjacency = vertex_adjacency(case.source.faces, case.source.n_vertices)
    regions = case.target_regions
    far = np.zeros(len(regions), bool)
    for r in np.unique(regions[regions >= 0]):
        mine = np.flatnonzero(regions == r)
        own = np.flatnonzero(case.source_regions == r)
        if len(own) == 0:
            far[mine] = True
            continue
        hops = dijkstra(adjacency, indices=own, min_only=True, unweighted=True, limit=rings + 0.5)
        far[mine] = ~np.isfinite(hops[t2s[mine]])
    return float(far[regions >= 0].mean())


def score(case, name: str, fn) -> dict:
    from sa3df.apps import evaluate

    start = time.perf_counter()
    t2s, features = cross_cases.method_output(fn(case))
    row = {"case": case.label, "method": name, "seconds": time.perf_counter() - start}
    row.update(evaluate.region_scores(t2s, case.source_regions, case.target_regions, case.mirror))
    row["near_boundary"] = near_a_boundary(case, t2s)
    row["blended"] = evaluate.blend_scores(t2s, case.source_regions, case.target_regions, case.mirror,
                                           case.source_weights, case.target_weights)["blended"]
    row["far_off"] = far_off(case, t2s)
    if features is not None:
        parts = parts_columns(case, features, t2s)
        row.update(agreement=parts["agreement"], sides_apart=parts["sides_apart"])
    if case.truth is not None:
        index = evaluate.evaluate_correspondence(case.target, t2s, case.truth, case.truth_mirror)
        row.update(geodesic=index["mean_error"], flip=index["flip_rate"])
    return row


def cases(pairs):
    for pair in pairs:
        same = pair.split("->")[0] == pair.split("->")[1]
        for posed in ((True,) if same else (False, True)):  # a character at rest against itself is trivial
            yield cross_cases.load_case(pair, posed)


def run(pairs, methods) -> list[dict]:
    rows = []
    for case in cases(pairs):
        for name in methods:
            rows.append(score(case, name, METHODS[name]))
            print(format_row(rows[-1]), flush=True)
    return rows


HEADER = (f"{'case':32s} {'method':16s} {'region acc':>10s} {'L/R swap':>8s} {'on edge':>7s} {'on blend':>8s} "
          f"{'far off':>7s} {'parts agr':>9s} {'L/R apart':>9s} {'geo err':>7s} {'flip':>6s} {'time s':>7s}")


def format_row(row: dict) -> str:
    def cell(key, width, fmt=".3f"):
        value = row.get(key)
        return f"{'-':>{width}s}" if value is None or value != value else f"{value:>{width}{fmt}}"

    return (f"{row['case']:32s} {row['method']:16s} {cell('accuracy', 10)} {cell('swap_rate', 8)} {cell('near_boundary', 7)} "
            f"{cell('blended', 8)} {cell('far_off', 7)} {cell('agreement', 9)} {cell('sides_apart', 9)} {cell('geodesic', 7)} "
            f"{cell('flip', 6)} {cell('seconds', 7, '.1f')}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help=f"only {', '.join(cross_cases.FAST_PAIRS)}")
    parser.add_argument("--pairs", nargs="+", choices=cross_cases.PAIRS + cross_cases.REVERSED_PAIRS)
    parser.add_argument("--reversed", action="store_true", help="the cross pairs the other way round instead")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS))
    args = parser.parse_args(argv)
    pairs = args.pairs or (cross_cases.FAST_PAIRS if args.fast else
                           cross_cases.REVERSED_PAIRS if args.reversed else cross_cases.PAIRS)
    methods = args.methods or list(METHODS)
    from sa3df.apps.evaluate import BLEND_SHARE

    start = time.perf_counter()
    print(HEADER)
    rows = run(pairs, methods)
    print(f"{len(rows)} rows, {len(pairs)} pairs x {len(methods)} methods in {time.perf_counter() - start:.0f} s "
          f"(region acc: share of target vertices matched into their own body region; L/R swap: share of "
          f"sided-region vertices matched into the mirror region; on edge: share of the wrong ones within one "
          f"edge ring of another region; on blend: share of the wrong ones where the vertex or its match has "
          f">= {BLEND_SHARE * 100:.0f} % of its skin weight in the other's region; far off: share of all "
          f"matched more than two source edge rings from their region; parts: k-means on the source carried by "
          f"the row's map)")


if __name__ == "__main__":
    main()
