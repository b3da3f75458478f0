"""Correspondence between different characters (and between frames of one), by body region.

For every pair of tests/cross_cases.py, the target at rest and posed (a frame of its own animation), every
method of ``METHODS`` maps the target's vertices to the source's. Printed per row: region accuracy (share
of target vertices matched into their own body region), left/right swap rate (sided regions matched into
the mirror region), the share of the wrong ones within one edge ring of another region (on edge: the
rigs disagreeing where a joint is), for methods with features the parts agreement of one joint k-means over both meshes
(k = 8, as Segment Parts, :func:`sa3df.apps.segment.sided_parts`: share of target vertices in the part
their region got on the source, and the share of left/right region pairs kept in different parts), and the method's time. Frame-to-frame rows
(one character, rest -> a frame; ground truth by vertex index) also print the mean geodesic error
(/ √area) and the left/right flip rate of sa3df.apps.evaluate.

A new method is one line: ``METHODS["new default"] = fn`` with ``fn(case) -> target_to_source (Nt,)``
(or ``(target_to_source, (source_features, target_features))`` to get the parts columns).

Run: python bench/bench_cross.py [--fast] [--pairs A->B ...] [--methods NAME ...]. Needs the shared data;
bpy only for the first run (the exported characters are cached, see tests/cross_cases.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "backend"), str(REPO), str(REPO / "tests")]
os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="sa3df-bench-"))

import cross_cases  # noqa: E402  (after the path set-up)
import cross_methods  # noqa: E402

METHODS = dict(cross_cases.BASELINES)
METHODS.update(cross_methods.METHODS)  # the new default (sa3df.apps.landmarks) and its prior on base features
PART_COUNT = 8


def parts_columns(case, features) -> dict:
    """Segment Parts' parts over both meshes' features (k-means, left and right apart), scored against
    the body regions."""
    from sa3df.apps import evaluate, segment

    labels, _ = segment.sided_parts(list(features), [case.source, case.target], PART_COUNT, up="z", seed=0)
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


def score(case, name: str, fn) -> dict:
    from sa3df.apps import evaluate

    start = time.perf_counter()
    t2s, features = cross_cases.method_output(fn(case))
    row = {"case": case.label, "method": name, "seconds": time.perf_counter() - start}
    row.update(evaluate.region_scores(t2s, case.source_regions, case.target_regions, case.mirror))
    row["near_boundary"] = near_a_boundary(case, t2s)
    if features is not None:
        parts = parts_columns(case, features)
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


HEADER = (f"{'case':32s} {'method':16s} {'region acc':>10s} {'L/R swap':>8s} {'on edge':>7s} {'parts agr':>9s} "
          f"{'L/R apart':>9s} {'geo err':>7s} {'flip':>6s} {'time s':>7s}")


def format_row(row: dict) -> str:
    def cell(key, width, fmt=".3f"):
        value = row.get(key)
        return f"{'-':>{width}s}" if value is None or value != value else f"{value:>{width}{fmt}}"

    return (f"{row['case']:32s} {row['method']:16s} {cell('accuracy', 10)} {cell('swap_rate', 8)} {cell('near_boundary', 7)} "
            f"{cell('agreement', 9)} {cell('sides_apart', 9)} {cell('geodesic', 7)} {cell('flip', 6)} "
            f"{cell('seconds', 7, '.1f')}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help=f"only {', '.join(cross_cases.FAST_PAIRS)}")
    parser.add_argument("--pairs", nargs="+", choices=cross_cases.PAIRS)
    parser.add_argument("--methods", nargs="+", choices=list(METHODS))
    args = parser.parse_args(argv)
    pairs = args.pairs or (cross_cases.FAST_PAIRS if args.fast else cross_cases.PAIRS)
    methods = args.methods or list(METHODS)
    start = time.perf_counter()
    print(HEADER)
    rows = run(pairs, methods)
    print(f"{len(rows)} rows, {len(pairs)} pairs x {len(methods)} methods in {time.perf_counter() - start:.0f} s "
          f"(region acc: share of target vertices matched into their own body region; L/R swap: share of "
          f"sided-region vertices matched into the mirror region; on edge: share of the wrong ones within one "
          f"edge ring of another region)")


if __name__ == "__main__":
    main()
