"""Base-feature extractors. Importing this package registers the built-in ones."""

from .base import (  # noqa: F401
    BaseExtractor,
    MissingWeightsError,
    available_extractors,
    create_extractor,
    register,
)
from . import geometric  # noqa: F401  (registers "geometric")
