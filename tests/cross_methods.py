"""The new default cross-character method, in the form bench/bench_cross.py registers (fn(case) -> map).

``new_default`` is what `sa3df match source target --up z` and the add-on do: geometric base features,
600 test-time training steps on both meshes, cosine matching of the embeddings plus the landmark prior
(:func:`sa3df.apps.match.matching_prior`). ``landmarks_on_base`` is the same prior on the base features
(no training), which the tests use because it takes seconds.
"""

from __future__ import annotations

from cross_cases import CrossCase


def landmarks_on_base(case: CrossCase):
    """Geometric base features + the landmark prior (`sa3df match --base --up z`)."""
    from sa3df.apps.match import correspondence, matching_prior
    from sa3df.features.extractors import create_extractor

    extractor = create_extractor("geometric")
    features = extractor.extract(case.source), extractor.extract(case.target)
    prior = matching_prior(case.source, case.target, up="z")
    return correspondence(*features, proximity=prior).target_to_source, features


def new_default(case: CrossCase, steps: int = 600):
    """`sa3df match source target --up z`: base features faced alike, 600 test-time steps (seed 0),
    embeddings matched with the landmark prior."""
    from sa3df.apps.match import correspondence, matching_prior
    from sa3df.features.pipeline import compute_surface_features
    from sa3df.features.train import TrainConfig

    result = compute_surface_features([case.source, case.target], extractor="geometric", face_alike_up="z",
                                      train_config=TrainConfig(steps=steps, seed=0, device="cpu"))
    features = tuple(f.embedding for f in result.features)
    prior = matching_prior(case.source, case.target, up="z")
    return correspondence(*features, proximity=prior).target_to_source, features


METHODS = {"landmarks+base": landmarks_on_base, "new default": new_default}
