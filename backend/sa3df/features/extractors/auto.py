"""Picking the best extractor this machine can run: ``choose_extractor("auto")``."""

from __future__ import annotations

import inspect

from sa3df.core.device import choose_device
from sa3df.features.extractors.base import BaseExtractor, available_extractors, create_extractor
from sa3df.features.extractors.base import _REGISTRY  # the registry is private to base; auto is its one reader

MIN_DIFF3F_GPU_GB = 8.0


def choose_extractor(preference: str = "auto", **settings) -> BaseExtractor:
    """The extractor named ``preference``, or for "auto" the best one available here:

    1. "diff3f" on a CUDA GPU with at least ``min_gpu_memory_gb`` (default 8) GB whose weights are
       present (a local folder or the Hugging Face cache);
    2. "dino" when the DINOv2 weights are present (runs on CPU too, with fewer views);
    3. "geometric", which needs no weights.

    ``settings`` go to the chosen extractor's constructor; ones it does not take are dropped, so
    callers can pass every setting they have. ``dino_model`` serves as the dino extractor's ``model``;
    ``weights_dir`` is a folder of model folders (``weights_dir/facebook/dinov2-base``, ...) or a hub cache.
    The returned extractor's ``name`` tells which one runs.
    """
    min_gb = float(settings.pop("min_gpu_memory_gb", MIN_DIFF3F_GPU_GB))
    if preference != "auto":
        return create_extractor(preference, **_accepted(preference, settings))
    device = choose_device(settings.get("device", "auto"))
    diff3f = _REGISTRY["diff3f"]
    big_gpu = device.type == "cuda" and _gpu_memory_gb(device) >= min_gb
    if big_gpu and diff3f.is_available(**_accepted("diff3f", settings)):
        return create_extractor("diff3f", **_accepted("diff3f", settings))
    if _REGISTRY["dino"].is_available(**_accepted("dino", settings)):
        return create_extractor("dino", **_accepted("dino", settings))
    return create_extractor("geometric", **_accepted("geometric", settings))


def _gpu_memory_gb(device) -> float:
    import torch

    return torch.cuda.get_device_properties(device).total_memory / 2**30


def _accepted(name: str, settings: dict) -> dict:
    """The subset of ``settings`` that extractor ``name``'s constructors (whole class chain) accept."""
    if name not in _REGISTRY:
        raise ValueError(f"Unknown extractor '{name}' (known: {', '.join(available_extractors())})")
    settings = dict(settings)
    if name == "dino" and "dino_model" in settings and "model" not in settings:
        settings["model"] = settings["dino_model"]
    names = set()
    for cls in inspect.getmro(_REGISTRY[name]):
        if "__init__" in vars(cls):
            names |= set(inspect.signature(cls.__init__).parameters) - {"self", "settings", "kwargs"}
    return {k: v for k, v in settings.items() if k in names}
