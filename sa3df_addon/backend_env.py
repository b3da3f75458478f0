"""Which Python the backend worker runs in, and setting up a managed one. No bpy here (tests drive it directly).

- *Bundled*: Blender's own Python with the wheels the extension zip ships (the worker gets ``sys.path``).
- *Managed*: a virtual environment in the extension's user folder, made with Blender's Python (or one the
  user names), holding the bundled backend wheel and the torch build the user picks (CPU, CUDA, ROCm, MPS).
- *External*: an interpreter the user names that has ``sa3df`` (or gets the bundled wheel installed offline).

Managed and external interpreters may be another Python version than Blender's: the worker protocol is
JSON lines and ``.npz`` files, so only ``sa3df``'s version has to match the add-on's.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

BUNDLED, MANAGED, EXTERNAL = "BUNDLED", "MANAGED", "EXTERNAL"
# The torch build of a managed environment -> the index it comes from (None: the default index).
TORCH_INDEXES = {
    "CPU": "https://download.pytorch.org/whl/cpu",
    "CUDA": "https://download.pytorch.org/whl/cu128",
    "ROCM": "https://download.pytorch.org/whl/rocm6.4",
    "MPS": None,  # macOS wheels on the default index are the Metal-enabled build
}
PROBE = (
    "import importlib.metadata as m, importlib.util as u, json, platform\n"
    "def version(name):\n"
    "    try:\n        return m.version(name)\n    except m.PackageNotFoundError:\n        return None\n"
    "print(json.dumps({'python': platform.python_version(), 'sa3df': version('sa3df'), 'torch': version('torch'),"
    " 'pip': u.find_spec('pip') is not None}))"
)
PROBE_SECONDS = 60


class BackendEnvError(ValueError):
    """The chosen backend environment cannot run the worker; the message says what to do."""


def addon_version(addon_dir: Path = Path(__file__).parent) -> str:
    """The extension's version (its manifest's), which the backend's ``sa3df.__version__`` must equal."""
    import tomllib

    return tomllib.loads((Path(addon_dir) / "blender_manifest.toml").read_text(encoding="utf-8"))["version"]


def venv_python(venv: Path) -> Path:
    return Path(venv) / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def probe(python: str | Path) -> dict:
    """{"python": "3.11.7", "sa3df": "0.1.0" or None, "torch": ... or None, "pip": bool} of an interpreter,
    read from package metadata (nothing is imported, so this takes well under a second)."""
    try:
        done = subprocess.run([str(python), "-c", PROBE], capture_output=True, text=True, timeout=PROBE_SECONDS)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise BackendEnvError(f"Cannot run the Python at '{python}': {error}") from None
    if done.returncode != 0:
        raise BackendEnvError(f"The Python at '{python}' failed ({done.returncode}): {done.stderr.strip()[-300:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def worker_settings(mode: str, addon_version: str, managed_root: Path, external_python: str = "") -> dict:
    """Keyword arguments of the add-on's worker client for ``mode``; raises :class:`BackendEnvError`."""
    if mode == BUNDLED:
        return {"python": None, "pythonpath": None, "expected_version": addon_version}
    if mode == MANAGED:
        python = venv_python(Path(managed_root) / "venv")
        if not python.exists():
            raise BackendEnvError("The managed backend environment is not set up yet: press 'Set Up Environment' "
                                  "in the add-on's preferences (Backend)")
    elif mode == EXTERNAL:
        python = Path(external_python) if external_python else None
        if python is None or not python.is_file():
            raise BackendEnvError(f"External Python '{external_python}' is not a file: name an interpreter that has "
                                  "sa3df (Preferences > Backend)")
    else:
        raise BackendEnvError(f"Unknown backend environment {mode!r}")
    # A managed environment is self-contained (no PYTHONPATH leaks in); an external one runs as from a shell.
    isolated = {"extra_env": {"PYTHONPATH": ""}} if mode == MANAGED else {}
    return {"python": str(python), "pythonpath": [], "expected_version": addon_version, **isolated}


def check_interpreter(python: str | Path, addon_version: str) -> dict:
    """The probe of ``python``, or a clear error when it lacks sa3df or torch or has another sa3df version."""
    found = probe(python)
    if found["sa3df"] is None:
        raise BackendEnvError(f"The Python at '{python}' (Python {found['python']}) has no sa3df backend: press "
                              "'Install Backend' to install the bundled wheel into it")
    if found["sa3df"] != addon_version:
        raise BackendEnvError(f"The Python at '{python}' has sa3df {found['sa3df']}, but this add-on is "
                              f"{addon_version}: press 'Install Backend' to install the matching one")
    if found["torch"] is None:
        raise BackendEnvError(f"The Python at '{python}' has sa3df but no torch: install torch into it")
    return found


def describe_device(report: dict | None) -> str:
    """One line for the panel from an "environment" job's report, e.g. "CUDA: NVIDIA RTX 4090, torch 2.5.1,
    fp16" or "CPU, 2 threads, torch 2.13.0"."""
    if not report:
        return "Device not checked yet"
    kind = report.get("device_type") or str(report.get("device", "?")).split(":")[0]
    torch = f"torch {report.get('torch', '?')}"
    if kind == "cuda":
        return f"CUDA: {report.get('cuda') or 'GPU'}, {torch}, {report.get('precision', 'fp32')}"
    if kind == "mps":
        return f"Apple GPU (MPS), {torch}, {report.get('precision', 'fp32')}"
    return f"CPU, {report.get('threads', '?')} threads, {torch}"


@dataclass
class Installer:
    """Installs the backend into a managed venv (``root``/venv) or, with ``target_python``, into an external
    interpreter, on a thread; ``state`` goes "idle" -> "running" -> "done" / "failed" (``error`` says why).

    A managed install builds ``root``/venv.new and swaps it in only once it works, so a failed reinstall
    keeps the previous environment. ``wheels`` is the extension's wheel folder (the backend wheel);
    ``find_links``: a local wheel folder, installs then never touch the network (``--no-index``);
    otherwise ``online`` must be true (Blender's *Allow Online Access*).
    """

    root: Path
    wheels: Path
    addon_version: str
    base_python: str = ""
    torch_build: str = "CPU"
    find_links: str = ""
    online: bool = False
    target_python: str = ""
    state: str = "idle"
    fraction: float = 0.0
    message: str = ""
    error: str = ""
    _thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def log_path(self) -> Path:
        return Path(self.root) / "install.log"

    @property
    def running(self) -> bool:
        return self.state == "running"

    def start(self) -> None:
        if self.running:
            raise BackendEnvError("An installation is already running")
        self.state, self.fraction, self.message, self.error = "running", 0.0, "starting", ""
        self._thread = threading.Thread(target=self._run, name="sa3df-install", daemon=True)
        self._thread.start()

    def wait(self, timeout: float | None = None) -> str:
        if self._thread is not None:
            self._thread.join(timeout)
        return self.state

    def _run(self) -> None:
        Path(self.root).mkdir(parents=True, exist_ok=True)
        try:
            with open(self.log_path, "w", encoding="utf-8") as log:
                self._install(log)
            self.state, self.fraction, self.message = "done", 1.0, "ready"
        except BackendEnvError as error:
            self.state, self.error, self.message = "failed", str(error), "failed"
        except Exception as error:  # noqa: BLE001 - anything else still leaves a message, never a dead thread
            self.state, self.error, self.message = "failed", f"{type(error).__name__}: {error}", "failed"

    def _install(self, log) -> None:
        if self.target_python:  # offline: the bundled wheels (and the local folder) hold what it lacks
            local = ["--find-links", str(self.find_links)] if self.find_links else []
            self._pip(self.target_python, [self._backend_wheel(), "--no-index", "--find-links", str(self.wheels),
                                           *local], log, 0.1, "installing the backend")
            check_interpreter(self.target_python, self.addon_version)
            return
        sources = self._sources()
        fresh = Path(self.root) / "venv.new"
        shutil.rmtree(fresh, ignore_errors=True)
        base = self.base_python or sys.executable
        self._step([base, "-m", "venv", str(fresh)], log, 0.05, f"creating the environment with {base}")
        python = str(venv_python(fresh))
        torch_index = [] if self.find_links or TORCH_INDEXES.get(self.torch_build) is None else [
            "--index-url", TORCH_INDEXES[self.torch_build]]
        self._pip(python, ["torch", *sources, *torch_index], log, 0.15, f"installing torch ({self.torch_build})")
        self._pip(python, [self._backend_wheel(), *sources], log, 0.7, "installing the backend")
        check_interpreter(python, self.addon_version)
        final = Path(self.root) / "venv"
        shutil.rmtree(final, ignore_errors=True)
        fresh.rename(final)

    def _sources(self) -> list[str]:
        if self.find_links:
            if not Path(self.find_links).is_dir():
                raise BackendEnvError(f"Offline wheel folder '{self.find_links}' does not exist")
            return ["--no-index", "--find-links", str(self.find_links), "--find-links", str(self.wheels)]
        if not self.online:
            raise BackendEnvError("Installing needs Blender's 'Allow Online Access' (Preferences > System), or an "
                                  "offline wheel folder")
        return ["--find-links", str(self.wheels)]

    def _backend_wheel(self) -> str:
        found = sorted(Path(self.wheels).glob(f"sa3df-{self.addon_version}-*.whl"))
        if not found:
            raise BackendEnvError(f"No sa3df {self.addon_version} wheel in '{self.wheels}' (is the extension complete?)")
        return str(found[-1])

    def _pip(self, python: str, arguments: list[str], log, fraction: float, message: str) -> None:
        self._step([python, "-m", "pip", "install", "--disable-pip-version-check", *arguments], log, fraction, message)

    def _step(self, command: list[str], log, fraction: float, message: str) -> None:
        self.fraction, self.message = fraction, message
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        try:
            done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, text=True)
        except OSError as error:  # e.g. the base Python named in the preferences does not exist
            raise BackendEnvError(f"{message} failed: {error}") from None
        if done.returncode != 0:
            tail = self.log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
            raise BackendEnvError(f"{message} failed (exit code {done.returncode}): " + " / ".join(tail)
                                  + f" (full log: {self.log_path})")
