"""The default cross-character method and its steps, in the form bench/bench_cross.py registers
(fn(case) -> map, features).

``new_default`` is what `sa3df match source target --up z` and the add-on do: geometric base features,
600 test-time training steps on both meshes (one CPU thread), cosine matching of the embeddings plus the landmark prior
with its alignment (:func:`sa3df.apps.match.matching_prior` given the features). ``landmarks_before`` is
the previous default (the landmark prior without the alignment). ``aligned_on_base`` /
``landmarks_on_base`` are the same two priors on the base features (no training), which the tests use
because they take seconds.
"""

from __future__ import annotations

from cross_cases import CrossCase


def _base(case: CrossCase):
    from sa3df.features.extractors import create_extractor

    extractor = create_extractor("geometric")
    return extractor.extract(case.source), extractor.extract(case.target)


def _trained(case: CrossCase, steps: int = 600):
    from sa3df.features.pipeline import compute_surface_features
    from sa3df.features.settings import FeatureSettings

    # One training thread: the figures then repeat on any machine (the add-on and CLI take a thread per
    # idle CPU, which changes float rounding; Segment Parts on man -> woman at rest agrees 0.920 with one
    # thread and 0.436 with two).
    settings = FeatureSettings(extractor="geometric", steps=steps, seed=0, device="cpu", up_axis="z",
                               training={"cpu_threads": 1})
    return tuple(f.embedding for f in compute_surface_features([case.source, case.target], settings).features)


def _matched(case: CrossCase, features, align: bool):
    from sa3df.apps.match import correspondence, matching_prior

    prior = matching_prior(case.source, case.target, up="z", features=features if align else None)
    return correspondence(*features, proximity=prior).target_to_source, features


def landmarks_on_base(case: CrossCase):
    """Geometric base features + the landmark prior, not aligned (`sa3df match --base --up z --refine none`)."""
    return _matched(case, _base(case), align=False)


def aligned_on_base(case: CrossCase):
    """Geometric base features + the aligned landmark prior (`sa3df match --base --up z`)."""
    return _matched(case, _base(case), align=True)


def landmarks_before(case: CrossCase):
    """The previous default: trained embeddings + the landmark prior, not aligned (`--refine none`)."""
    return _matched(case, _trained(case), align=False)


def new_default(case: CrossCase):
    """`sa3df match source target --up z`: base features faced alike, 600 test-time steps (seed 0),
    embeddings matched with the aligned landmark prior."""
    return _matched(case, _trained(case), align=True)


METHODS = {"landmarks+base": landmarks_on_base, "aligned+base": aligned_on_base,
           "landmarks before": landmarks_before, "new default": new_default}
