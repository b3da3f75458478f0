"""Does a prior network help cross-character matching? Leave-the-pair-out: for each pair, a network is
trained on every *other* character of tests/cross_cases.py (rest pose + its posed frame, 2000 steps),
then the pair is matched with the default prior (aligned landmark prior) on features from

- per-pair 600: test-time training only (today's default, `sa3df match --up z`),
- prior+600: the prior network fine-tuned 600 steps on the pair (`--checkpoint` + steps),
- prior only: the prior network's embedding, no test-time training.

Prints region accuracy (as bench/bench_cross.py) per pair, at rest and posed, with position-only.
Run: python bench/bench_cross_prior.py [--pairs A->B ...] [--prior-steps 2000]. Needs the shared data.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "backend"), str(REPO), str(REPO / "tests")]

from blender_scene import sandbox_blender_user  # noqa: E402

sandbox_blender_user("sa3df-bench-")
import cross_cases  # noqa: E402

PAIRS = ["man->woman", "woman->animated_human", "horse->cow", "fox->wolf"]


def settings(steps: int, checkpoint=None):
    from sa3df.features.settings import FeatureSettings

    return FeatureSettings(extractor="geometric", steps=steps, seed=0, device="cpu", up_axis="z", checkpoint=checkpoint)


def accuracy(case, t2s) -> float:
    from sa3df.apps import evaluate

    return evaluate.region_scores(t2s, case.source_regions, case.target_regions, case.mirror)["accuracy"]


def matched(case, checkpoint, steps: int):
    from sa3df.apps import match
    from sa3df.features.pipeline import compute_surface_features

    features = tuple(f.embedding for f in compute_surface_features([case.source, case.target],
                                                                    settings(steps, checkpoint)).features)
    prior = match.matching_prior(case.source, case.target, up="z", features=features)
    return match.correspondence(*features, proximity=prior).target_to_source


def train_prior(pair: str, folder: Path, steps: int) -> list[str]:
    from sa3df.features.pipeline import compute_surface_features

    source, _, target = pair.partition("->")
    others = [name for name in cross_cases.CHARACTERS if name not in (source, target)]
    meshes = [cross_cases.character_mesh(name, posed) for name in others for posed in (False, True)]
    compute_surface_features(meshes, settings(steps)).save(folder)
    return others


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", nargs="+", default=PAIRS, choices=cross_cases.CROSS_PAIRS)
    parser.add_argument("--prior-steps", type=int, default=2000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sa3df-prior-") as scratch:
        for pair in args.pairs:
            start = time.perf_counter()
            folder = Path(scratch) / pair.replace("->", "_to_")
            others = train_prior(pair, folder, args.prior_steps)
            print(f"{pair}: prior trained on {', '.join(others)} (rest + posed, {args.prior_steps} steps) "
                  f"in {time.perf_counter() - start:.0f} s", flush=True)
            for posed in (False, True):
                case = cross_cases.load_case(pair, posed)
                cells = [f"position-only {accuracy(case, cross_cases.position_only(case)):.3f}"]
                for label, checkpoint, steps in (("per-pair 600", None, 600), ("prior+600", folder, 600),
                                                 ("prior only", folder, 0)):
                    cells.append(f"{label} {accuracy(case, matched(case, checkpoint, steps)):.3f}")
                print(f"  {case.label:28s} " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
