"""Build the installable Blender extension zip: add-on code + the backend wheel + its dependency wheels.

    python build_addon.py                        # this machine's platform -> dist/sa3df_tools-0.1.0-linux-x64.zip
    python build_addon.py --platform windows-x64   # one zip per platform keeps downloads small
    python build_addon.py --platform windows-x64 --platform macos-arm64 --platform linux-x64   # one zip for all
    python build_addon.py --semantic             # also bundle transformers/diffusers (adds network permission)
    python build_addon.py --check dist/x.zip     # only validate an existing zip

Steps: build the ``sa3df`` wheel from ``backend/``; ``pip download --only-binary=:all:`` the
dependencies for each platform (pinned to the versions installed here, i.e. the tested ones, and to
constraints.txt); drop numpy (Blender ships it; its version must satisfy every bundled wheel); stage
``sa3df_addon/`` with a manifest listing the wheels; zip; validate the result: manifest fields,
zip layout, wheel tags against the declared platforms and Python 3.11, and, when the bpy module is
installed, Blender's own extension validator. Products (``wheels/``, ``build/``, ``dist/``) are not
committed.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

ROOT = Path(__file__).resolve().parent
ADDON_DIR, BACKEND_DIR = ROOT / "sa3df_addon", ROOT / "backend"
WHEELS_DIR, BUILD_DIR, DIST_DIR = ROOT / "wheels", ROOT / "build", ROOT / "dist"
PYTHON_VERSION = "3.11"  # Blender 4.2-5.0 embed CPython 3.11
BLENDER_NUMPY = "1.26.4"  # the numpy Blender ships (4.2-5.0); bundled wheels must accept it
LAST_PYTHON_311_BLENDER = (5, 1, 0)  # blender_version_max (exclusive) for CPython 3.11 wheels
SEMANTIC = ["transformers", "diffusers", "accelerate"]
EXCLUDED = {"numpy", "bpy"}  # provided by Blender

PLATFORM_TAGS = {  # Blender platform -> pip --platform tags (Blender's own minimum OS versions and up)
    "linux-x64": [f"manylinux_2_{m}_x86_64" for m in range(28, 16, -1)] + ["manylinux2014_x86_64"],
    "windows-x64": ["win_amd64"],
    "windows-arm64": ["win_arm64"],
    "macos-arm64": [f"macosx_{v}_0_arm64" for v in range(11, 16)] + [f"macosx_{v}_0_universal2" for v in range(11, 16)],
    "macos-x64": [f"macosx_10_{v}_x86_64" for v in range(13, 16)] + [f"macosx_{v}_0_x86_64" for v in range(11, 16)],
}
PLATFORM_PATTERNS = {
    "linux-x64": r"^(manylinux_2_(\d+)|manylinux2014|manylinux2010|manylinux1|linux)_x86_64$",
    "windows-x64": r"^win_amd64$",
    "windows-arm64": r"^win_arm64$",
    "macos-arm64": r"^macosx_\d+_\d+_(arm64|universal2)$",
    "macos-x64": r"^macosx_\d+_\d+_(x86_64|universal2|intel)$",
}
# Dependencies that only some platforms need (behind environment markers pip cannot evaluate for them).
PLATFORM_EXTRAS = {"windows-x64": ["colorama"], "windows-arm64": ["colorama"]}
REQUIRED_FIELDS = ("schema_version", "id", "version", "name", "tagline", "maintainer", "type",
                   "blender_version_min", "license")
PERMISSIONS = {"files", "network", "clipboard", "camera", "microphone"}


def this_platform() -> str:
    machine = platform.machine().lower()
    arch = "arm64" if machine in ("arm64", "aarch64") else "x64"
    system = {"linux": "linux", "darwin": "macos", "win32": "windows"}.get(sys.platform, sys.platform)
    return f"{system}-{arch}"


def run(command: list[str]) -> None:
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def backend_requirements(semantic: bool) -> list[str]:
    project = tomllib.loads((BACKEND_DIR / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(r) for r in project["dependencies"]] + [Requirement(r) for r in (SEMANTIC if semantic else [])]
    return [str(r) for r in requirements if canonicalize_name(r.name) not in EXCLUDED]


def tested_pins(path: Path) -> Path:
    """A constraints file: constraints.txt plus ``name==version`` of what is installed here."""
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    for dist in importlib.metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"] or "")
        if name and name not in EXCLUDED and name != "sa3df":
            lines.append(f"{name}=={Version(dist.version).public}")
    path.write_text("\n".join(line for line in lines if line.strip() and not line.startswith("#")) + "\n")
    return path


def build_backend_wheel(out: Path) -> Path:
    """The ``sa3df`` wheel, built from a copy of backend/ (setuptools leaves build/ and egg-info behind)."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "backend"
        shutil.copytree(BACKEND_DIR, source, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "build", "*.egg-info"))
        run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(source)])
    return max(out.glob("sa3df-*.whl"), key=lambda p: p.stat().st_mtime)


PIP_ARGS: list[str] = []  # extra pip options from --pip-arg (e.g. --find-links=DIR holding CPU torch wheels)


def _pip_download(platform_name: str, requirements: list[str], out: Path, extra: list[str]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "-qq", "--only-binary=:all:", "--python-version", PYTHON_VERSION,
               "--implementation", "cp", "-d", str(out), *extra, *PIP_ARGS]
    for tag in PLATFORM_TAGS[platform_name]:
        command += ["--platform", tag]
    run(command + requirements)
    for wheel in out.glob("*.whl"):
        if canonicalize_name(parse_wheel_filename(wheel.name)[0]) in EXCLUDED:
            wheel.unlink()
    return sorted(out.glob("*.whl"))


def download_dependencies(platforms: list[str], requirements: list[str], constraints: Path, out: Path) -> dict[str, Path]:
    """Dependency wheels for ``platforms``: {file name: folder}.

    pip evaluates environment markers against the machine it runs on, so only this machine's
    platform is resolved with dependencies; every other platform gets the same pinned set of
    distributions, one wheel each (``--no-deps``), plus its own marker-only extras.
    """
    native = this_platform()
    resolved = _pip_download(native, requirements, out / native, ["-c", str(constraints)])
    wheels = {w.name: w.parent for w in resolved} if native in platforms else {}
    pure = {w.name for w in resolved if parse_wheel_filename(w.name)[3] and
            all(t.platform == "any" for t in parse_wheel_filename(w.name)[3])}
    binary_pins = [f"{parse_wheel_filename(w.name)[0]}=={parse_wheel_filename(w.name)[1].public}"
                   for w in resolved if w.name not in pure]
    for platform_name in platforms:
        if platform_name == native:
            continue
        if native not in platforms:  # pure-Python wheels are the same everywhere
            wheels.update({name: out / native for name in pure})
        found = _pip_download(platform_name, binary_pins + PLATFORM_EXTRAS.get(platform_name, []),
                              out / platform_name, ["--no-deps"])
        wheels.update({w.name: w.parent for w in found})
    return wheels


def stage(wheels: list[Path], platforms: list[str], semantic: bool) -> Path:
    """Copy the add-on into build/<id>/ with its wheels and the filled-in manifest."""
    manifest_text = (ADDON_DIR / "blender_manifest.toml").read_text()
    addon_id = tomllib.loads(manifest_text)["id"]
    target = BUILD_DIR / addon_id
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(ADDON_DIR, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "README.md"))
    (target / "wheels").mkdir()
    for wheel in wheels:
        shutil.copy2(wheel, target / "wheels" / wheel.name)
    listing = ",\n".join(f'  "./wheels/{w.name}"' for w in sorted(wheels, key=lambda p: p.name))
    manifest_text = re.sub(r"(?m)^platforms = .*$", "platforms = " + _toml_list(platforms), manifest_text)
    manifest_text = re.sub(r"(?m)^wheels = .*$", f"wheels = [\n{listing},\n]", manifest_text)
    if semantic:
        manifest_text = manifest_text.replace(
            "[permissions]\n", '[permissions]\nnetwork = "Downloads model weights when allowed in the preferences"\n'
        )
    (target / "blender_manifest.toml").write_text(manifest_text)
    return target


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(f'"{i}"' for i in items) + "]"


def make_zip(folder: Path, zip_path: Path) -> Path:
    """Zip ``folder``'s contents at the archive root; wheels are stored (already compressed)."""
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    partial = zip_path.with_suffix(".partial")
    with zipfile.ZipFile(partial, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                method = zipfile.ZIP_STORED if path.suffix == ".whl" else zipfile.ZIP_DEFLATED
                archive.write(path, path.relative_to(folder).as_posix(), compress_type=method)
    partial.replace(zip_path)
    return zip_path


# ---------------------------------------------------------------------------------------------
# Validation


def check_manifest(manifest: dict) -> list[str]:
    """Problems with the manifest's fields (Blender extension schema 1.0.0), as messages."""
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
    max_version = _version(get("blender_version_max"))
    if max_version is None or max_version > LAST_PYTHON_311_BLENDER:
        problems.append(f"manifest: blender_version_max {get('blender_version_max')!r} must be set, at most "
                        f"{'.'.join(map(str, LAST_PYTHON_311_BLENDER))}: the wheels are for CPython {PYTHON_VERSION}, "
                        "and Blender 5.1 embeds Python 3.13")
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


def check_wheel(name: str, platforms: list[str]) -> list[str]:
    """Problems with one wheel's tags: Python 3.11 (cp311, abi3 ≤ 3.11, py3) and the platforms."""
    dist, _, _, tags = parse_wheel_filename(name)
    problems = []
    if canonicalize_name(dist) in EXCLUDED:
        problems.append(f"{name}: {dist} is provided by Blender and must not be bundled")
    cuda_torch = canonicalize_name(dist) == "torch" and "linux" in name and "+cpu" not in name
    if canonicalize_name(dist).startswith("nvidia-") or cuda_torch:
        problems.append(f"{name}: a CUDA build (GBs); give pip the CPU torch wheels, e.g. --pip-arg=--find-links=DIR")
    pythons_ok = any(
        t.interpreter in ("py3", "cp311") or (t.abi == "abi3" and t.interpreter.startswith("cp3")
                                              and int(t.interpreter[3:]) <= 11)
        for t in tags
    )
    if not pythons_ok:
        problems.append(f"{name}: no tag for CPython {PYTHON_VERSION}")
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


def check_numpy_compatibility(wheel_paths: list[Path], numpy_version: str = BLENDER_NUMPY) -> list[str]:
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
    problems = check_manifest(manifest)
    if "__init__.py" not in names:
        problems.append(f"{zip_path.name}: no __init__.py at the archive root (the add-on module)")
    problems += [f"{zip_path.name}: contains {n}" for n in names if "__pycache__" in n or n.endswith(".pyc")]
    listed = [w.removeprefix("./") for w in manifest.get("wheels", [])]
    problems += [f"manifest lists {w}, which is not in the zip" for w in listed if w not in names]
    problems += [f"{w} is in the zip but not listed in the manifest" for w in names
                 if w.endswith(".whl") and w not in listed]
    platforms = manifest.get("platforms") or list(PLATFORM_PATTERNS)
    for wheel in listed:
        problems += check_wheel(Path(wheel).name, platforms)
    wheel_dists = {canonicalize_name(parse_wheel_filename(Path(w).name)[0]) for w in listed}
    if "sa3df" not in wheel_dists:
        problems.append("the sa3df backend wheel is missing")
    for platform_name in platforms:  # every platform needs each binary dependency
        for dist in wheel_dists:
            own = [w for w in listed if canonicalize_name(parse_wheel_filename(Path(w).name)[0]) == dist]
            if not any(not check_wheel(Path(w).name, [platform_name]) for w in own):
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


def default_zip_path(platforms: list[str] | None = None) -> Path:
    platforms = platforms or [this_platform()]
    manifest = tomllib.loads((ADDON_DIR / "blender_manifest.toml").read_text())
    suffix = platforms[0] if len(platforms) == 1 else "multi"
    return DIST_DIR / f"{manifest['id']}-{manifest['version']}-{suffix}.zip"


def ensure_built() -> Path:
    """This platform's zip, rebuilt when any add-on or backend source is newer than it."""
    zip_path = default_zip_path()
    sources = [p for d in (ADDON_DIR, BACKEND_DIR) for p in d.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    if not zip_path.exists() or max(p.stat().st_mtime for p in sources) > zip_path.stat().st_mtime:
        if main([]) != 0:
            raise RuntimeError(f"building {zip_path.name} failed (see the output above)")
    return zip_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--platform", action="append", choices=sorted(PLATFORM_TAGS),
                        help="Blender platform to build for (repeat; default: this machine's)")
    parser.add_argument("--semantic", action="store_true", help="bundle transformers/diffusers/accelerate")
    parser.add_argument("--out", type=Path, default=DIST_DIR, help="folder for the zip (default: dist/)")
    parser.add_argument("--check", type=Path, metavar="ZIP", help="only validate this zip")
    parser.add_argument("--pip-arg", action="append", default=[], metavar="ARG",
                        help="extra option for pip download, e.g. --pip-arg=--find-links=/opt/wheels (CPU torch)")
    args = parser.parse_args(argv)
    PIP_ARGS[:] = args.pip_arg
    if args.check:
        return report(args.check, check_zip(args.check))
    platforms = args.platform or [this_platform()]
    shutil.rmtree(WHEELS_DIR, ignore_errors=True)
    wheels = {build_backend_wheel(WHEELS_DIR).name: WHEELS_DIR}
    requirements = backend_requirements(args.semantic)
    with tempfile.TemporaryDirectory() as tmp:
        constraints = tested_pins(Path(tmp) / "constraints.txt")
        wheels.update(download_dependencies(platforms, requirements, constraints, WHEELS_DIR))
    paths = [folder / name for name, folder in wheels.items()]
    problems = check_numpy_compatibility(paths)
    staged = stage(paths, platforms, args.semantic)
    zip_path = make_zip(staged, args.out / default_zip_path(platforms).name)
    return report(zip_path, problems + check_zip(zip_path))


def report(zip_path: Path, problems: list[str]) -> int:
    if problems:
        print(f"{zip_path}: {len(problems)} problem(s):\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    size = zip_path.stat().st_size / 2**20
    print(f"OK {zip_path} ({size:.0f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
