"""Where model weights come from: a local folder, or a Hugging Face hub id in the local cache.

Nothing downloads unless the caller allows it (``allow_downloads=True``, or the environment variable
``SA3DF_ALLOW_DOWNLOADS=1``). When weights are missing and downloading is off, a
:class:`~.base.MissingWeightsError` says which ids or folders are needed and how to get them.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from sa3df.features.extractors.base import MissingWeightsError


def downloads_allowed(setting: bool | None) -> bool:
    """The extractor setting if given, else ``SA3DF_ALLOW_DOWNLOADS=1``; never when ``HF_HUB_OFFLINE=1``."""
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    if setting is not None:
        return bool(setting)
    return os.environ.get("SA3DF_ALLOW_DOWNLOADS") == "1"


def is_local_folder(source: str) -> bool:
    return Path(source).expanduser().is_dir()


def resolve(source: str, weights_dir: str | None = None) -> tuple[str, str | None]:
    """Where to load ``source`` from: (a folder or hub id, the hub cache folder to use or None).

    A ``source`` that is a folder is used as is. With a ``weights_dir`` (the add-on's "weights
    folder"), a hub id ``org/name`` is looked up there as ``weights_dir/org/name`` or
    ``weights_dir/name`` (folders saved with save_pretrained or ``hf download --local-dir``);
    otherwise ``weights_dir`` serves as the Hugging Face cache (hub layout, where downloads go).
    """
    if is_local_folder(source) or not weights_dir:
        return source, None
    base = Path(weights_dir).expanduser()
    for candidate in (base / source, base / source.split("/")[-1]):
        if candidate.is_dir():
            return str(candidate), None
    return source, str(base)


def weights_present(source: str, marker: str = "config.json", weights_dir: str | None = None) -> bool:
    """Whether ``source`` (a folder, or a hub id) has ``marker`` locally: in the folder, under
    ``weights_dir`` (see :func:`resolve`), or in the Hugging Face cache."""
    source, cache_dir = resolve(source, weights_dir)
    if is_local_folder(source):
        return Path(source).expanduser().joinpath(marker).exists()
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    try:
        found = try_to_load_from_cache(source, marker, cache_dir=cache_dir)
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
        f"{fetch} (one per id; `--local-dir WEIGHTS_DIR/<id>` to use a weights folder), or set the "
        "extractor's model settings to local folders saved with save_pretrained (config.json + safetensors)."
    )


def require(what: str, sources: list[tuple[str, str]], allow_downloads: bool | None,
            weights_dir: str | None = None) -> bool:
    """Check that every (source, marker file) is present, unless downloads are allowed.

    Returns ``local_files_only`` for ``from_pretrained``. Raises MissingWeightsError listing the
    missing sources otherwise.
    """
    missing = [source for source, marker in sources if not weights_present(source, marker, weights_dir)]
    if downloads_allowed(allow_downloads):
        if missing:
            require_hub_reachable(what, missing)
        return False
    if missing:
        raise missing_weights_error(what, missing)
    return True


def require_hub_reachable(what: str, sources: list[str], timeout_s: float = 3.0) -> None:
    """Raise MissingWeightsError at once when the model hub cannot be reached, instead of letting
    ``from_pretrained`` retry for a minute and end in a traceback."""
    import socket
    from urllib.parse import urlparse

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout_s).close()
    except OSError as error:
        listed = ", ".join(f"'{s}'" for s in sources)
        raise MissingWeightsError(
            f"{what} weights {listed} would be downloaded, but {endpoint} cannot be reached ({error}). "
            "Connect to the network, or fetch them elsewhere with `hf download ID --local-dir WEIGHTS_DIR/ID` "
            "and point the weights folder (--weights-dir) there, or use the offline 'geometric' extractor."
        ) from None


@contextmanager
def incomplete_weights_are_missing(what: str, sources: list[str], local_only: bool):
    """Turn from_pretrained's OSError for a partial local copy (config present, weights not) into
    the same MissingWeightsError, when loading offline."""
    try:
        yield
    except OSError as error:
        if not local_only:
            raise
        raise missing_weights_error(what, sources) from error
