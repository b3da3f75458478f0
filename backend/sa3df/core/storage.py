"""Files on disk that other runs trust: atomic writes, checked reads, and size-bounded cache folders.

Every file sa3df writes goes through :func:`atomic_write`: the data goes to a temporary name that is
unique per writer (process id + random part) in the same folder, then is renamed over the real name.
A reader never sees half a file, and two processes writing the same entry never share a temporary.

Cache entries are ``.npz`` files holding a ``key`` (what they were computed from); :func:`read_npz`
returns ``None`` for anything that cannot be trusted (truncated, not an archive, another key), and
the caller recomputes. Cache folders are kept under a size limit, least recently used first out
(``SA3DF_CACHE_LIMIT_MB``, default :data:`DEFAULT_LIMIT_MB` per folder; 0 means no limit).
"""

from __future__ import annotations

import os
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

DEFAULT_LIMIT_MB = 2048
LIMIT_VARIABLE = "SA3DF_CACHE_LIMIT_MB"
CACHE_FOLDERS = ("features", "anchors", "surface_features")  # under a cache root (--cache, the add-on's folder)
PARTIAL = ".partial"  # temporary files carry this in their names; cache listings skip them
UNREADABLE = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile)  # what a damaged .npz raises


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object], make_folder: bool = True) -> Path:
    """Call ``write(tmp)`` to write the file at ``tmp``, then rename it to ``path`` (its folder created
    unless ``make_folder`` is False: a job folder that its owner removed must stay removed).

    ``tmp`` ends in the same suffix as ``path`` (so ``np.savez``/``np.save`` add none). On failure the
    temporary is removed and the error propagates; ``path`` is untouched.
    """
    path = Path(path)
    if make_folder:
        path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=PARTIAL + path.suffix,
                                    dir=path.parent)
    os.close(handle)
    tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_npz(path: str | os.PathLike, arrays: dict, compressed: bool = False, make_folder: bool = True) -> Path:
    """Write ``arrays`` as an ``.npz`` atomically (no pickle)."""
    save = np.savez_compressed if compressed else np.savez
    return atomic_write(path, lambda tmp: save(tmp, **{k: np.asarray(v) for k, v in arrays.items()}), make_folder)


def read_npz(path: str | os.PathLike, key: str | None = None) -> dict[str, np.ndarray] | None:
    """All arrays of an ``.npz``, or ``None`` when it is missing, damaged or (with ``key``) holds
    another entry's ``key``. Reading marks the file as recently used."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except UNREADABLE:
        return None
    if key is not None and str(arrays.get("key", "")) != key:
        return None
    _touch(path)
    return arrays


def finite_array(value, shape: tuple, dtype=np.float32) -> bool:
    """``value`` is an array of ``dtype`` whose shape matches ``shape`` (``None`` = any size) and
    whose values are all finite."""
    if not isinstance(value, np.ndarray) or value.dtype != dtype or value.ndim != len(shape):
        return False
    if any(want is not None and got != want for got, want in zip(value.shape, shape)):
        return False
    return bool(np.isfinite(value).all()) if value.dtype.kind == "f" else True


def _touch(path: Path) -> None:
    try:
        os.utime(path)
    except OSError:
        pass  # a read-only cache still serves; it just ages by write time


def cache_limit_bytes(megabytes: float | None = None) -> int:
    """The per-folder cache limit: ``megabytes`` when given, else ``SA3DF_CACHE_LIMIT_MB`` (0: unbounded)."""
    if megabytes is not None:
        return int(float(megabytes) * 2**20)
    text = os.environ.get(LIMIT_VARIABLE, str(DEFAULT_LIMIT_MB))
    try:
        megabytes = float(text)
    except ValueError:
        raise ValueError(f"{LIMIT_VARIABLE} must be a number of megabytes, got '{text}'") from None
    return int(megabytes * 2**20)


def cache_files(folder: str | os.PathLike) -> list[Path]:
    """Finished entries under ``folder`` (recursively), least recently used first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    files = [p for p in folder.rglob("*") if p.is_file() and PARTIAL not in p.name]
    return sorted(files, key=lambda p: p.stat().st_mtime)


def prune(folder: str | os.PathLike, limit_bytes: int | None = None, keep: Path | None = None) -> int:
    """Delete least recently used entries until ``folder`` holds at most ``limit_bytes`` (default:
    :func:`cache_limit_bytes`); ``keep`` (the entry just written) stays. Returns how many were removed."""
    limit = cache_limit_bytes() if limit_bytes is None else limit_bytes
    remove_stale_partials(folder)
    if limit <= 0:
        return 0
    files = cache_files(folder)
    total, removed = sum(p.stat().st_size for p in files), 0
    for path in files:
        if total <= limit:
            break
        if keep is not None and path == Path(keep):
            continue
        size = path.stat().st_size
        path.unlink(missing_ok=True)
        total, removed = total - size, removed + 1
    return removed


def remove_stale_partials(folder: str | os.PathLike, older_than_s: float = 3600.0) -> int:
    """Remove temporaries left by writers that were killed (older than ``older_than_s``)."""
    folder, now, removed = Path(folder), time.time(), 0
    for path in folder.rglob(f"*{PARTIAL}*") if folder.is_dir() else []:
        if path.is_file() and now - path.stat().st_mtime > older_than_s:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def cache_summary(root: str | os.PathLike) -> str:
    """Lines for ``sa3df cache info``: files and megabytes per cache folder under ``root``, and the limit."""
    root = Path(root)
    folders = [root / name for name in CACHE_FOLDERS if (root / name).is_dir()]
    lines = [f"cache {root} (limit {cache_limit_bytes() / 2**20:.0f} MB per folder, {LIMIT_VARIABLE}):"]
    for folder in folders:
        files = cache_files(folder)
        size = sum(p.stat().st_size for p in files)
        lines.append(f"  {folder.name}: {len(files)} file(s), {size / 2**20:.1f} MB")
    return "\n".join(lines if folders else lines + ["  empty"])


def clear_cache(root: str | os.PathLike) -> tuple[int, int]:
    """Delete sa3df's cache entries (and leftover temporaries) under ``root``: only ``.npz``/``.npy`` files
    inside its :data:`CACHE_FOLDERS`, so a mistyped ``--cache`` cannot empty another folder.
    Returns (files, bytes) removed."""
    root = Path(root)
    files = [p for name in CACHE_FOLDERS if (root / name).is_dir() for p in (root / name).rglob("*")
             if p.is_file() and p.suffix in (".npz", ".npy")]
    size = sum(p.stat().st_size for p in files)
    for path in files:
        path.unlink(missing_ok=True)
    return len(files), size
