"""The backend environment inside Blender: the worker client the preferences ask for, setting up a managed
environment (or installing the backend into an external Python), and what the preferences and panel show."""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

import bpy
from sa3df.service import client as worker_client

from . import backend_env
from .backend_env import BUNDLED, EXTERNAL, MANAGED, BackendEnvError
from .preferences import preferences

ADDON_DIR = Path(__file__).parent
_installer: backend_env.Installer | None = None  # the latest installation (its state is shown until replaced)
_checked: set[str] = set()  # interpreters found to have the add-on's sa3df and torch this session


def managed_root() -> Path:
    try:
        return Path(bpy.utils.extension_path_user(__package__, path="backend", create=True))
    except (ValueError, AttributeError):  # run from the source tree, not installed as an extension
        return Path(tempfile.gettempdir(), "sa3df-backend")


def bundled_torch() -> bool:
    """Whether the extension's wheels include torch (found without importing it into Blender)."""
    return importlib.util.find_spec("torch") is not None


def _mode(context) -> str:
    prefs = preferences(context)
    return prefs.backend if prefs is not None else BUNDLED


def client_for(context) -> worker_client.WorkerClient:
    """The session's worker client for the chosen environment; raises :class:`BackendEnvError` saying what to
    do when that environment cannot run (a switch of environment releases the previous worker)."""
    prefs, mode = preferences(context), _mode(context)
    if mode == BUNDLED and not bundled_torch():
        raise BackendEnvError("This build of the extension has no torch (none exists for this platform and "
                              "Blender's Python): choose the Managed or External backend in the add-on's preferences")
    external = bpy.path.abspath(prefs.external_python) if prefs is not None else ""
    version = backend_env.addon_version(ADDON_DIR)
    settings = backend_env.worker_settings(mode, version, managed_root(), external)
    if mode != BUNDLED and settings["python"] not in _checked:  # a clear message, not a worker's traceback
        backend_env.check_interpreter(settings["python"], version)
        _checked.add(settings["python"])
    return worker_client.shared_client(**settings)


def backend_summary(context) -> str:
    """E.g. "Managed: CUDA: NVIDIA RTX 4090, torch 2.8.0, fp16" (the device of the last check)."""
    names = {BUNDLED: "Bundled", MANAGED: "Managed", EXTERNAL: "External"}
    current = worker_client.current_client()
    return f"{names[_mode(context)]}: {backend_env.describe_device(current.environment if current else None)}"


def start_install(context) -> backend_env.Installer:
    """Start setting up the managed environment, or installing the backend into the external Python."""
    global _installer
    prefs = preferences(context)
    if _installer is not None and _installer.running:
        raise BackendEnvError("An installation is already running")
    external = prefs.backend == EXTERNAL
    _installer = backend_env.Installer(
        root=managed_root(), wheels=ADDON_DIR / "wheels", addon_version=backend_env.addon_version(ADDON_DIR),
        base_python=bpy.path.abspath(prefs.managed_python), torch_build=prefs.managed_torch,
        find_links=bpy.path.abspath(prefs.managed_wheels), online=bool(bpy.app.online_access),
        target_python=bpy.path.abspath(prefs.external_python) if external else "",
    )
    worker_client.release_shared_client()  # its files may be replaced
    _checked.clear()
    _installer.start()
    return _installer


def current_install() -> backend_env.Installer | None:
    return _installer


class SA3DF_OT_install_backend(bpy.types.Operator):
    """Create (or repair) the managed environment, or install the bundled backend wheel into the external Python"""

    bl_idname = "sa3df.install_backend"
    bl_label = "Set Up Backend"

    @classmethod
    def poll(cls, context):
        return _mode(context) in (MANAGED, EXTERNAL) and not (_installer is not None and _installer.running)

    def execute(self, context):
        try:
            installer = start_install(context)
        except BackendEnvError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        if not bpy.app.background:
            bpy.app.timers.register(_redraw_while_installing, first_interval=0.5)
            self.report({"INFO"}, f"Installing the backend (log: {installer.log_path})")
            return {"FINISHED"}
        if installer.wait() != "done":
            self.report({"ERROR"}, f"Setting up the backend failed; the add-on keeps its previous backend. "
                                   f"{installer.error}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Backend installed (log: {installer.log_path})")
        return {"FINISHED"}


def _redraw_while_installing():
    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == "PREFERENCES":
                area.tag_redraw()
    return 0.5 if _installer is not None and _installer.running else None


def draw_backend_preferences(prefs, layout) -> None:
    """The Backend box of the add-on's preferences."""
    layout.label(text="Backend", icon="SYSTEM")
    layout.prop(prefs, "backend")
    if prefs.backend == BUNDLED and not bundled_torch():
        layout.label(text="This build has no torch: choose Managed or External", icon="ERROR")
    elif prefs.backend == MANAGED:
        for name in ("managed_torch", "managed_python", "managed_wheels"):
            layout.prop(prefs, name)
        if not bpy.app.online_access and not prefs.managed_wheels:
            layout.label(text="Needs 'Allow Online Access' (System preferences) or an offline wheel folder",
                         icon="INFO")
        exists = backend_env.venv_python(managed_root() / "venv").exists()
        layout.operator("sa3df.install_backend", text="Repair / Reinstall" if exists else "Set Up Environment")
    elif prefs.backend == EXTERNAL:
        layout.prop(prefs, "external_python")
        layout.operator("sa3df.install_backend", text="Install Backend Into This Python")
    _draw_install_state(layout)
    layout.label(text=backend_summary(bpy.context))
    row = layout.row()
    row.operator("sa3df.check_backend", icon="SYSTEM")
    row.operator("sa3df.release_worker", icon="CANCEL")


def _draw_install_state(layout) -> None:
    installer = _installer
    if installer is None:
        return
    if installer.running:
        layout.progress(factor=installer.fraction, type="BAR", text=installer.message)
    elif installer.state == "failed":
        layout.label(text=f"Install failed: {installer.error[:200]}", icon="ERROR")
    if installer.state != "idle":
        layout.label(text=f"Log: {installer.log_path}")


classes = (SA3DF_OT_install_backend,)
