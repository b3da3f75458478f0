"""Where model weights come from: a local folder, or a Hugging Face hub id in the local cache.

Nothing downloads unless the caller allows it (``allow_downloads=True``, or the environment variable
``SA3DF_ALLOW_DOWNLOADS=1``). When weights are missing and downloading is off, a
:class:`~.base.MissingWeightsError` says which ids or folders are needed and how to get them.
"""

from __future__ import annotations

import os
from pathlib import Path

from .base import MissingWeightsError


def downloads_allowed(setting: bool | None) -> bool:
    """The extractor setting if given, else ``SA3DF_ALLOW_DOWNLOADS=1``; never when ``HF_HUB_OFFLINE=1``."""
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    if setting is not None:
        return bool(setting)
    return os.environ.get("SA3DF_ALLOW_DOWNLOADS") == "1"


def is_local_folder(source: str) -> bool:
    return Path(source).expanduser().is_dir()


def weights_present(source: str, marker: str = "config.json") -> bool:
    """Whether ``source`` (a folder, or a hub id) has ``marker`` locally (the folder, or the HF cache)."""
    if is_local_folder(source):
        return Path(source).expanduser().joinpath(marker).exists()
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    try:
        found = try_to_load_from_cache(source, marker)
    except Exception:  # a malformed id is simply "not present"
        return False
    return isinstance(found, str)


def missing_weights_error(what: str, sources: list[str]) -> MissingWeightsError:
    """A MissingWeightsError naming the ids/folders of ``what`` and the ways to get them."""
    listed = ", ".join(f"'{s}'" for s in sources)
    hub_ids = [s for s in sources if not s.startswith(("/", ".", "~")) and not is_local_folder(s)]
    fetch = f"`hf download {hub_ids[0]}`" if hub_ids else "copying the model folder there"
    return MissingWeightsError(
        f"{what} weights are not available offline: {listed} is neither a local model folder nor in the "
        "local Hugging Face cache, and downloading is off. Either allow downloads (extractor setting "
        "allow_downloads=True or SA3DF_ALLOW_DOWNLOADS=1; in Blender also turn on Preferences > System > "
        "Network > 'Allow Online Access', i.e. bpy.app.online_access), or fetch them once with "
        f"{fetch} (one per id), or set the extractor's model settings to local folders saved with "
        "save_pretrained (config.json + safetensors)."
    )


def require(what: str, sources: list[tuple[str, str]], allow_downloads: bool | None) -> bool:
    """Check that every (source, marker file) is present, unless downloads are allowed.

    Returns ``local_files_only`` for ``from_pretrained``. Raises MissingWeightsError listing the
    missing sources otherwise.
    """
    if downloads_allowed(allow_downloads):
        return False
    missing = [source for source, marker in sources if not weights_present(source, marker)]
    if missing:
        raise missing_weights_error(what, missing)
    return True
