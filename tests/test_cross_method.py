"""The landmark prior beats position-only matching between different characters (bench/bench_cross.py
prints the whole table, with the trained default). Here the prior rides on the base features, which
takes seconds; thresholds are the measured margins less about two points."""

import pytest

# The cases run the backend (scipy, torch) in this process: not on bpy 5.2, whose Python has no backend.
pytest.importorskip("scipy", reason="needs the torch backend in the test process")

import cross_cases  # noqa: E402
import cross_methods  # noqa: E402
from sa3df.apps import evaluate  # noqa: E402

pytestmark = pytest.mark.blender


def _scores(case, method):
    t2s, _ = cross_cases.method_output(method(case))
    return evaluate.region_scores(t2s, case.source_regions, case.target_regions, case.mirror)


@pytest.mark.parametrize("pair, posed, margin", [
    ("man->animated_human", True, 0.10),  # different skeletons, target walking: measured +0.14
    ("horse->cow", False, 0.01),  # quadrupeds of other proportions at rest: +0.018
    ("horse->cow", True, 0.02),  # and the cow walking: +0.04
    ("fox->wolf", True, 0.10),  # the wolf galloping: +0.13
])
def test_landmark_prior_beats_position_only(exported, pair, posed, margin):
    case = cross_cases.load_case(pair, posed)
    position = _scores(case, cross_cases.position_only)
    landmarks = _scores(case, cross_methods.landmarks_on_base)
    assert landmarks["accuracy"] > position["accuracy"] + margin, (landmarks, position)
    assert landmarks["swap_rate"] <= 0.02, landmarks


def test_landmark_prior_keeps_up_with_position_at_rest_between_different_skeletons(exported):
    """Both humanoids in their T-pose: position alone is strong here (0.871); the prior must not lose."""
    case = cross_cases.load_case("man->animated_human", False)
    position, landmarks = _scores(case, cross_cases.position_only), _scores(case, cross_methods.landmarks_on_base)
    assert landmarks["accuracy"] > position["accuracy"] - 0.02, (landmarks, position)
    assert landmarks["swap_rate"] <= 0.01, landmarks
