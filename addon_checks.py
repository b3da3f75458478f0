"""Validation of a built extension zip (see ``build_addon.py``): manifest fields, zip layout, wheel tags
against the declared platforms and the Python of the Blender versions the manifest allows, the numpy those
Blender versions ship, and, when the bpy module is installed, Blender's own extension validator."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

# Blender's embedded CPython -> the Blender versions embedding it ([min, max) as in the manifest) and the
# numpy it ships, which every bundled wheel must accept (3.13: the lowest numpy the bpy 5.x module accepts).
ABIS = {
    "3.11": {"blender": ((4, 2, 0), (5, 1, 0)), "numpy": "1.26.4"},
    "3.13": {"blender": ((5, 1, 0), (6, 0, 0)), "numpy": "2.2.0"},
}
EXCLUDED = {"numpy", "bpy"}  # provided by Blender
PLATFORM_PATTERNS = {
    "linux-x64": r"^(manylinux_2_(\d+)|manylinux2014|manylinux2010|manylinux1|linux)_x86_64$",
    "windows-x64": r"^win_amd64$",
    "windows-arm64": r"^win_arm64$",
    "macos-arm64": r"^macosx_\d+_\d+_(arm64|universal2)$",
    "macos-x64": r"^macosx_\d+_\d+_(x86_64|universal2|intel)$",
}
REQUIRED_FIELDS = ("schema_version", "id", "version", "name", "tagline", "maintainer", "type",
                   "blender_version_min", "license")
PERMISSIONS = {"files", "network", "clipboard", "camera", "microphone"}


def dotted(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def python_of(manifest: dict) -> str:
    """The CPython of the Blender versions a manifest allows (from its ``blender_version_min``)."""
    low = _version(manifest.get("blender_version_min")) or (0, 0, 0)
    fits = [py for py, abi in ABIS.items() if abi["blender"][0] <= low < abi["blender"][1]]
    return fits[0] if fits else "3.11"




def check_manifest(manifest: dict, python: str | None = None) -> list[str]:
    """Problems with the manifest's fields (Blender extension schema 1.0.0), as messages. ``python``: the
    CPython its wheels are for (default: the one its Blender range embeds)."""
    python = python or python_of(manifest)
    problems = [f"manifest: missing field '{f}'" for f in REQUIRED_FIELDS if f not in manifest]
    get = manifest.get
    if get("schema_version") != "1.0.0":
        problems.append(f"manifest: schema_version must be '1.0.0', not {get('schema_version')!r}")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*[A-Za-z0-9]", str(get("id", ""))):
        problems.append(f"manifest: id {get('id')!r} must be an identifier not starting/ending with '_'")
    if not re.fullmatch(r"\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?", str(get("version", ""))):
        problems.append(f"manifest: version {get('version')!r} is not semantic (X.Y.Z)")
    tagline = str(get("tagline", ""))
    if not tagline or len(tagline) > 64 or tagline[-1] in ".,;:!?":
        problems.append(f"manifest: tagline must be 1-64 characters without end punctuation: {tagline!r}")
    if get("type") not in ("add-on", "theme"):
        problems.append(f"manifest: type must be 'add-on' or 'theme', not {get('type')!r}")
    min_version = _version(get("blender_version_min"))
    if min_version is None:
        problems.append(f"manifest: blender_version_min {get('blender_version_min')!r} is not X.Y.Z")
    elif min_version < (4, 2, 0):
        problems.append("manifest: blender_version_min must be at least 4.2.0 (extensions need 4.2)")
    low, high = ABIS[python]["blender"]
    if min_version is not None and not low <= min_version < high:
        problems.append(f"manifest: blender_version_min {get('blender_version_min')} is outside {dotted(low)}-"
                        f"{dotted(high)}, the Blender versions embedding Python {python}")
    max_version = _version(get("blender_version_max"))
    if max_version is None or max_version > high:
        problems.append(f"manifest: blender_version_max {get('blender_version_max')!r} must be set, at most "
                        f"{dotted(high)}: the wheels are for CPython {python}"
                        + (", and Blender 5.1 embeds Python 3.13" if python == "3.11" else ""))
    licences = get("license") or []
    if not licences or not all(str(x).startswith("SPDX:") for x in licences):
        problems.append(f"manifest: license must be a list of 'SPDX:…' identifiers, got {licences!r}")
    if "SPDX:GPL-3.0-or-later" not in licences:
        problems.append("manifest: the licence must be GPL-3.0-or-later (compatible with the method's GPL-3.0 code)")
    for name in get("platforms") or []:
        if name not in PLATFORM_PATTERNS:
            problems.append(f"manifest: unknown platform {name!r} (known: {', '.join(PLATFORM_PATTERNS)})")
    for key, reason in (get("permissions") or {}).items():
        if key not in PERMISSIONS:
            problems.append(f"manifest: unknown permission {key!r}")
        elif not isinstance(reason, str) or not reason or len(reason) > 64 or reason[-1] in ".,;:!?":
            problems.append(f"manifest: permission {key!r} needs a reason of 1-64 characters without end punctuation")
    return problems


def _version(text) -> tuple[int, ...] | None:
    """(X, Y, Z) of an "X.Y.Z" string, else None."""
    return tuple(int(x) for x in str(text).split(".")) if re.fullmatch(r"\d+\.\d+\.\d+", str(text)) else None


def check_wheel(name: str, platforms: list[str], python: str = "3.11") -> list[str]:
    """Problems with one wheel's tags: ``python`` (e.g. cp311, abi3 up to 3.11, py3) and the platforms."""
    cp = "cp" + python.replace(".", "")
    dist, _, _, tags = parse_wheel_filename(name)
    problems = []
    if canonicalize_name(dist) in EXCLUDED:
        problems.append(f"{name}: {dist} is provided by Blender and must not be bundled")
    cuda_torch = canonicalize_name(dist) == "torch" and "linux" in name and "+cpu" not in name
    if canonicalize_name(dist).startswith("nvidia-") or cuda_torch:
        problems.append(f"{name}: a CUDA build (GBs); give pip the CPU torch wheels, e.g. --pip-arg=--find-links=DIR")
    pythons_ok = any(
        t.interpreter in ("py3", cp) or (t.abi == "abi3" and t.interpreter.startswith("cp3")
                                         and int(t.interpreter[3:]) <= int(python.split(".")[1]))
        for t in tags
    )
    if not pythons_ok:
        problems.append(f"{name}: no tag for CPython {python}")
    platform_tags = {t.platform for t in tags}
    if "any" not in platform_tags:
        fits = [p for p in platforms if any(re.match(PLATFORM_PATTERNS[p], tag) for tag in platform_tags)]
        if not fits:
            problems.append(f"{name}: its platforms {sorted(platform_tags)} fit none of {platforms}")
        for tag in platform_tags:
            m = re.match(PLATFORM_PATTERNS["linux-x64"], tag)
            if m and m.group(2) and int(m.group(2)) > 28 and "linux-x64" in platforms:
                problems.append(f"{name}: needs glibc 2.{m.group(2)}, newer than Blender's 2.28")
    return problems


def check_numpy_compatibility(wheel_paths: list[Path], numpy_version: str = ABIS["3.11"]["numpy"]) -> list[str]:
    """Bundled wheels that do not accept Blender's numpy."""
    problems = []
    for path in wheel_paths:
        with zipfile.ZipFile(path) as archive:
            metadata = next((n for n in archive.namelist() if n.endswith(".dist-info/METADATA")), None)
            text = archive.read(metadata).decode("utf-8", "replace") if metadata else ""
        for line in text.splitlines():
            if line.startswith("Requires-Dist:"):
                req = Requirement(line.split(":", 1)[1].strip())
                if canonicalize_name(req.name) == "numpy" and (req.marker is None or "extra" not in str(req.marker)):
                    if numpy_version not in req.specifier:
                        problems.append(f"{path.name}: requires numpy{req.specifier}, Blender has {numpy_version}")
    return problems


def check_zip(zip_path: Path) -> list[str]:
    """Validate a built extension zip; returns problems (empty when it is fine)."""
    with zipfile.ZipFile(zip_path) as archive:
        names = set(archive.namelist())
        if "blender_manifest.toml" not in names:
            return [f"{zip_path.name}: no blender_manifest.toml at the archive root"]
        manifest = tomllib.loads(archive.read("blender_manifest.toml").decode())
    python = python_of(manifest)
    problems = check_manifest(manifest, python)
    if "__init__.py" not in names:
        problems.append(f"{zip_path.name}: no __init__.py at the archive root (the add-on module)")
    problems += [f"{zip_path.name}: contains {n}" for n in names if "__pycache__" in n or n.endswith(".pyc")]
    listed = [w.removeprefix("./") for w in manifest.get("wheels", [])]
    problems += [f"manifest lists {w}, which is not in the zip" for w in listed if w not in names]
    problems += [f"{w} is in the zip but not listed in the manifest" for w in names
                 if w.endswith(".whl") and w not in listed]
    platforms = manifest.get("platforms") or list(PLATFORM_PATTERNS)
    for wheel in listed:
        problems += check_wheel(Path(wheel).name, platforms, python)
    wheel_dists = {canonicalize_name(parse_wheel_filename(Path(w).name)[0]) for w in listed}
    if "sa3df" not in wheel_dists:
        problems.append("the sa3df backend wheel is missing")
    for platform_name in platforms:  # every platform needs each binary dependency
        for dist in wheel_dists:
            own = [w for w in listed if canonicalize_name(parse_wheel_filename(Path(w).name)[0]) == dist]
            if not any(not check_wheel(Path(w).name, [platform_name], python) for w in own):
                problems.append(f"no wheel of {dist} fits {platform_name}")
    return problems + blender_validator(zip_path)


def blender_validator(zip_path: Path) -> list[str]:
    """Run Blender's own extension validator (bundled with the bpy module) when it is installed."""
    try:
        import importlib.util

        spec = importlib.util.find_spec("bpy")
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.submodule_search_locations:
        return []
    found = list(Path(list(spec.submodule_search_locations)[0]).glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not found:
        return []
    done = subprocess.run([sys.executable, str(found[0]), "validate", str(zip_path)], capture_output=True, text=True)
    if done.returncode != 0:
        return [f"Blender's validator: {(done.stdout + done.stderr).strip()}"]
    print(f"Blender's extension validator: {done.stdout.strip()}")
    return []
