"""Build the installable Blender extension zips: add-on code + the backend wheel + its dependency wheels.

    python build_addon.py                          # this machine, Blender 4.2-5.0 -> dist/sa3df_tools-0.1.0-cp311-linux-x64.zip
    python build_addon.py --python 3.13            # Blender 5.1 and later 5.x (CPython 3.13)
    python build_addon.py --platform windows-x64   # one zip per platform keeps downloads small
    python build_addon.py --all                    # every Blender Python x linux-x64, windows-x64, macos-arm64
    python build_addon.py --semantic               # also bundle transformers/diffusers (adds network permission)
    python build_addon.py --check dist/x.zip       # only validate an existing zip

Blender embeds one CPython per release range (3.11 in 4.2-5.0, 3.13 from 5.1), so each zip is for one of
them, and its manifest allows exactly that range. Steps: build the ``sa3df`` wheel from ``backend/``; ``pip
download --only-binary=:all:`` the dependencies for each platform and that Python (pinned to the versions
installed here, i.e. the tested ones, and to constraints.txt); drop numpy (Blender ships it); stage
``sa3df_addon/`` with a manifest listing the wheels; zip; validate (``addon_checks``). Linux torch is bundled
only as a CPU build found in a local wheel folder (pip's find-links): the index's Linux torch is the CUDA
build with GBs of NVIDIA libraries, so without a CPU wheel the zip ships without torch and the add-on leads
the user to a managed or external backend. Products (``wheels/``, ``build/``, ``dist/``) are not committed.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
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

from addon_checks import (  # noqa: F401  (check_* are this script's validation API too)
    ABIS, EXCLUDED, PLATFORM_PATTERNS, check_manifest, check_numpy_compatibility, check_wheel, check_zip, dotted,
    python_of,
)

ROOT = Path(__file__).resolve().parent
ADDON_DIR, BACKEND_DIR = ROOT / "sa3df_addon", ROOT / "backend"
WHEELS_DIR, BUILD_DIR, DIST_DIR = ROOT / "wheels", ROOT / "build", ROOT / "dist"
SEMANTIC = ["transformers", "diffusers", "accelerate"]
RELEASE_PLATFORMS = ["linux-x64", "windows-x64", "macos-arm64"]  # what --all builds

PLATFORM_TAGS = {  # Blender platform -> pip --platform tags (Blender's own minimum OS versions and up)
    "linux-x64": [f"manylinux_2_{m}_x86_64" for m in range(28, 16, -1)] + ["manylinux2014_x86_64"],
    "windows-x64": ["win_amd64"],
    "windows-arm64": ["win_arm64"],
    "macos-arm64": [f"macosx_{v}_0_arm64" for v in range(11, 16)] + [f"macosx_{v}_0_universal2" for v in range(11, 16)],
    "macos-x64": [f"macosx_10_{v}_x86_64" for v in range(13, 16)] + [f"macosx_{v}_0_x86_64" for v in range(11, 16)],
}
# Dependencies that only some platforms need (behind environment markers pip cannot evaluate for them).
PLATFORM_EXTRAS = {"windows-x64": ["colorama"], "windows-arm64": ["colorama"]}
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


def tested_pins(path: Path, python: str = "3.11") -> Path:
    """A constraints file: constraints.txt plus ``name==version`` of what is installed here. numpy is not
    bundled; its pins (Blender 4.2-5.0's numpy 1.x) are dropped for another Blender's Python, which ships
    its own (for 3.13: 2.x)."""
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    if python != "3.11":
        lines = [line for line in lines if not line.startswith("numpy")]
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


def _pip_download(python: str, platform_name: str, requirements: list[str], out: Path, extra: list[str]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "-qq", "--only-binary=:all:", "--python-version", python,
               "--implementation", "cp", "-d", str(out), *extra, *PIP_ARGS]
    for tag in PLATFORM_TAGS[platform_name]:
        command += ["--platform", tag]
    run(command + requirements)
    for wheel in out.glob("*.whl"):
        if canonicalize_name(parse_wheel_filename(wheel.name)[0]) in EXCLUDED:
            wheel.unlink()
    return sorted(out.glob("*.whl"))


def local_wheel_folders() -> list[Path]:
    """Folders pip reads wheels from without an index: --pip-arg=--find-links=DIR and pip's own configuration."""
    folders = [a.split("=", 1)[1] for a in PIP_ARGS if a.startswith("--find-links=")]
    done = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True)
    for line in done.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.endswith("find-links"):
            folders += value.strip("'\"").split()
    return [Path(f.removeprefix("file://")) for f in folders if Path(f.removeprefix("file://")).is_dir()]


def bundles_torch(python: str, platform_name: str) -> bool:
    """Whether a zip for ``platform_name`` gets torch: Windows and macOS torch wheels are CPU builds; Linux
    ones only when a CPU build (``+cpu``) sits in a local wheel folder (the index's is the CUDA build)."""
    if not platform_name.startswith("linux"):
        return True
    cp = "cp" + python.replace(".", "")
    return any(any(f.glob(f"torch-*+cpu-{cp}-{cp}-*linux*_x86_64.whl")) for f in local_wheel_folders())


def download_dependencies(python: str, platforms: list[str], requirements: list[str], constraints: Path,
                          out: Path) -> dict[str, Path]:
    """Dependency wheels for ``python`` and ``platforms``: {file name: folder}.

    pip evaluates environment markers against the machine it runs on, so only this machine's
    platform is resolved with dependencies; every other platform gets the same pinned set of
    distributions, one wheel each (``--no-deps``), plus its own marker-only extras. Where the native
    platform gets no torch, the platforms that do get it with its (pure-Python) dependencies.
    """
    native = this_platform()
    native_torch = bundles_torch(python, native)
    native_requirements = [r for r in requirements if native_torch or canonicalize_name(Requirement(r).name) != "torch"]
    resolved = _pip_download(python, native, native_requirements, out / native, ["-c", str(constraints)])
    wheels = {w.name: w.parent for w in resolved} if native in platforms else {}
    pure = {w.name for w in resolved if all(t.platform == "any" for t in parse_wheel_filename(w.name)[3])}
    binary_pins = [f"{parse_wheel_filename(w.name)[0]}=={parse_wheel_filename(w.name)[1].public}"
                   for w in resolved if w.name not in pure]
    for platform_name in platforms:
        if platform_name == native:
            continue
        if native not in platforms:  # pure-Python wheels are the same everywhere
            wheels.update({name: out / native for name in pure})
        found = _pip_download(python, platform_name, binary_pins + PLATFORM_EXTRAS.get(platform_name, []),
                              out / platform_name, ["--no-deps"])
        if not native_torch and bundles_torch(python, platform_name):
            found = _torch_with_dependencies(python, platform_name, _torch_pin(constraints), out / platform_name)
        wheels.update({w.name: w.parent for w in found})
    return wheels


def _torch_pin(constraints: Path) -> str:
    pins = [line for line in constraints.read_text().splitlines() if line.startswith("torch==")]
    return pins[0] if pins else "torch"


# Environment markers of each platform: pip would evaluate torch's against this machine (Linux: CUDA libraries).
MARKERS = {
    "windows-x64": {"sys_platform": "win32", "platform_system": "Windows", "platform_machine": "AMD64", "os_name": "nt"},
    "windows-arm64": {"sys_platform": "win32", "platform_system": "Windows", "platform_machine": "ARM64", "os_name": "nt"},
    "macos-arm64": {"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "arm64", "os_name": "posix"},
    "macos-x64": {"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "x86_64", "os_name": "posix"},
}


def _torch_with_dependencies(python: str, platform_name: str, pin: str, out: Path) -> list[Path]:
    """torch for another platform, and its dependencies as that platform's markers select them."""
    found = _pip_download(python, platform_name, [pin], out, ["--no-deps"])
    torch_wheel = next(w for w in found if canonicalize_name(parse_wheel_filename(w.name)[0]) == "torch")
    environment = {**MARKERS[platform_name], "python_version": python, "python_full_version": f"{python}.0",
                   "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}
    with zipfile.ZipFile(torch_wheel) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        lines = archive.read(metadata).decode("utf-8", "replace").splitlines()
    needed = [Requirement(line.split(":", 1)[1].strip()) for line in lines if line.startswith("Requires-Dist:")]
    needed = [f"{r.name}{r.specifier}" for r in needed if r.marker is None or r.marker.evaluate(environment)]
    return _pip_download(python, platform_name, needed, out, []) if needed else found


def stage(wheels: list[Path], platforms: list[str], semantic: bool, python: str) -> Path:
    """Copy the add-on into build/<id>/ with its wheels and the manifest filled in for ``python``'s Blenders."""
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
    low, high = ABIS[python]["blender"]
    manifest_text = re.sub(r"(?m)^blender_version_min = .*$", f'blender_version_min = "{dotted(low)}"', manifest_text)
    manifest_text = re.sub(r"(?m)^blender_version_max = .*$", f'blender_version_max = "{dotted(high)}"', manifest_text)
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


def running_python() -> str:
    """This interpreter's ``X.Y`` when Blender embeds it (the bpy module's venv), else 3.11."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return version if version in ABIS else "3.11"


def default_zip_path(platforms: list[str] | None = None, python: str = "3.11") -> Path:
    platforms = platforms or [this_platform()]
    manifest = tomllib.loads((ADDON_DIR / "blender_manifest.toml").read_text())
    suffix = platforms[0] if len(platforms) == 1 else "multi"
    return DIST_DIR / f"{manifest['id']}-{manifest['version']}-cp{python.replace('.', '')}-{suffix}.zip"


def ensure_built(python: str | None = None) -> Path:
    """This platform's zip for ``python`` (default: this interpreter's Blender Python), rebuilt when any add-on
    or backend source is newer than it. $SA3DF_BUILD_PYTHON runs the build (default: this interpreter): the
    pins come from what is installed there."""
    python = python or running_python()
    zip_path = default_zip_path(python=python)
    sources = [p for d in (ADDON_DIR, BACKEND_DIR) for p in d.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    sources += [ROOT / "build_addon.py", ROOT / "addon_checks.py"]
    if not zip_path.exists() or max(p.stat().st_mtime for p in sources) > zip_path.stat().st_mtime:
        builder = os.environ.get("SA3DF_BUILD_PYTHON", sys.executable)
        if subprocess.run([builder, str(ROOT / "build_addon.py"), "--python", python]).returncode != 0:
            raise RuntimeError(f"building {zip_path.name} failed (see the output above)")
    return zip_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--platform", action="append", choices=sorted(PLATFORM_TAGS),
                        help="Blender platform to build for (repeat: one zip for several; default: this machine's)")
    parser.add_argument("--python", action="append", choices=sorted(ABIS),
                        help="Blender's CPython to build for (repeat; default 3.11: Blender 4.2-5.0; 3.13: 5.1+)")
    parser.add_argument("--all", action="store_true",
                        help=f"one zip per Blender Python and platform ({', '.join(RELEASE_PLATFORMS)})")
    parser.add_argument("--semantic", action="store_true", help="bundle transformers/diffusers/accelerate")
    parser.add_argument("--out", type=Path, default=DIST_DIR, help="folder for the zip (default: dist/)")
    parser.add_argument("--check", type=Path, metavar="ZIP", help="only validate this zip")
    parser.add_argument("--pip-arg", action="append", default=[], metavar="ARG",
                        help="extra option for pip download, e.g. --pip-arg=--find-links=/opt/wheels (CPU torch)")
    args = parser.parse_args(argv)
    PIP_ARGS[:] = args.pip_arg
    if args.check:
        return report(args.check, check_zip(args.check))
    pythons = sorted(ABIS) if args.all else args.python or ["3.11"]
    groups = [[p] for p in RELEASE_PLATFORMS] if args.all else [args.platform or [this_platform()]]
    failed = 0
    for python in pythons:
        for platforms in groups:
            failed += build(python, platforms, args.semantic, args.out)
    return 1 if failed else 0


def build(python: str, platforms: list[str], semantic: bool, out: Path) -> int:
    """Build and validate one zip; returns report()'s exit status."""
    wheels_dir = WHEELS_DIR / f"cp{python.replace('.', '')}"
    shutil.rmtree(wheels_dir, ignore_errors=True)
    wheels = {build_backend_wheel(wheels_dir).name: wheels_dir}
    with tempfile.TemporaryDirectory() as tmp:
        constraints = tested_pins(Path(tmp) / "constraints.txt", python)
        wheels.update(download_dependencies(python, platforms, backend_requirements(semantic), constraints, wheels_dir))
    paths = [folder / name for name, folder in wheels.items()]
    problems = check_numpy_compatibility(paths, ABIS[python]["numpy"])
    staged = stage(paths, platforms, semantic, python)
    zip_path = make_zip(staged, out / default_zip_path(platforms, python).name)
    torch = any(p.name.startswith("torch-") for p in paths)
    return report(zip_path, problems + check_zip(zip_path), f"Blender {' - '.join(map(dotted, ABIS[python]['blender']))}"
                  f" (exclusive), {', '.join(platforms)}, {'with CPU torch' if torch else 'without torch'}")


def report(zip_path: Path, problems: list[str], what: str = "") -> int:
    if problems:
        print(f"{zip_path}: {len(problems)} problem(s):\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    size = zip_path.stat().st_size / 2**20
    print(f"OK {zip_path} ({size:.0f} MiB){': ' + what if what else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
