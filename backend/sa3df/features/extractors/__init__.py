"""Base-feature extractors. Importing this package registers the built-in ones.

"geometric" needs nothing; "dino" (DINOv2 on rendered views) needs ``transformers``; "diff3f"
(Stable Diffusion + ControlNets + DINOv2, as in Diff3F) needs ``diffusers`` too. Those libraries
are imported only when a model is loaded, so the package works without them.
:func:`choose_extractor` picks the best one this machine can run.
"""

from sa3df.features.extractors.base import (  # noqa: F401
    BaseExtractor,
    MissingWeightsError,
    available_extractors,
    create_extractor,
    register,
)
from sa3df.features.extractors import geometric  # noqa: F401  (registers "geometric")
from sa3df.features.extractors import dino  # noqa: F401  (registers "dino")
from sa3df.features.extractors import diff3f  # noqa: F401  (registers "diff3f")
from sa3df.features.extractors.auto import choose_extractor  # noqa: F401
