"""Add-on preferences: which extractor and device, where caches and weights live, how hard to train."""

from __future__ import annotations

import tempfile
from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty

EXTRACTORS = [
    ("auto", "Auto", "The best extractor whose weights are present (falls back to Geometric)"),
    ("geometric", "Geometric", "Spectral shape descriptors: no weights, no GPU, works offline"),
    ("dino", "DINOv2 (rendered)", "DINOv2 features of rendered views lifted to the surface (needs weights)"),
    ("diff3f", "Diff3F", "Diffusion + DINO features of rendered views, as in the paper (needs weights, a GPU helps)"),
]
DEVICES = [
    ("auto", "Auto", "CUDA if present, then Apple MPS, then CPU"),
    ("cpu", "CPU", ""),
    ("cuda", "CUDA", "An NVIDIA GPU"),
    ("mps", "Apple GPU", "Metal (MPS)"),
]
BACKENDS = [
    ("BUNDLED", "Bundled", "Blender's own Python with the wheels this extension ships (CPU torch where one exists)"),
    ("MANAGED", "Managed", "A virtual environment in the extension's folder with the torch build you pick (GPU)"),
    ("EXTERNAL", "External Python", "An interpreter you name that has the sa3df backend (any Python >= 3.11)"),
]
TORCH_BUILDS = [
    ("CPU", "CPU", "Works everywhere"),
    ("CUDA", "CUDA", "NVIDIA GPUs (Linux, Windows)"),
    ("ROCM", "ROCm", "AMD GPUs (Linux)"),
    ("MPS", "Apple GPU", "Metal on Apple Silicon (macOS)"),
]
# Times: Compute Features pressed on two 5k-vertex meshes (geometric features, a fresh cache, the worker
# started), wall seconds on the project's idle 2-core machine, from bench/bench_effort.py: off 1.7 s (starting
# the worker), fast 3.7 s, normal 6.3 s, thorough 19.0 s.
EFFORTS = [
    ("off", "Off", "No test-time training: use the checkpoint's embedding (or the base features without one)"),
    ("fast", "Fast (~4 s)", "300 training steps on the selection: about 4 s for two 5k-vertex meshes on a 2-core CPU"),
    ("normal", "Normal (~6 s)", "600 training steps (the command line's default): about 6 s for two 5k meshes"),
    ("thorough", "Thorough (~19 s)", "2000 training steps: about 19 s for two 5k-vertex meshes"),
]


class SA3DF_AddonPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    extractor: EnumProperty(name="Extractor", items=EXTRACTORS, default="auto")
    device: EnumProperty(name="Device", items=DEVICES, default="auto")
    cache_dir: StringProperty(
        name="Cache Folder", subtype="DIR_PATH", default="",
        description="Where computed features are kept (empty: the extension's own user folder)",
    )
    cache_limit_mb: IntProperty(
        name="Cache Size Limit (MB)", default=2048, min=0, soft_max=65536,
        description="Largest size of each cache folder (features, geodesic anchors, results); the least "
                    "recently used entries are removed first. 0: no limit",
    )
    weights_dir: StringProperty(
        name="Model Weights", subtype="DIR_PATH", default="",
        description="Folder holding extractor weights (DINOv2, Stable Diffusion, ControlNets) as hub-style folders",
    )
    checkpoint: StringProperty(
        name="Checkpoint", subtype="DIR_PATH", default="",
        description="A trained surface-aware network (config.json + model.safetensors); optional",
    )
    effort: EnumProperty(name="Training Effort", items=EFFORTS, default="fast")
    allow_downloads: BoolProperty(
        name="Allow Weight Downloads", default=False,
        description="Let extractors download missing weights (only when Blender's online access is on)",
    )

    backend: EnumProperty(name="Backend", items=BACKENDS, default="BUNDLED",
                          description="Which Python the backend worker runs in")
    external_python: StringProperty(name="External Python", subtype="FILE_PATH", default="",
                                    description="Interpreter with the sa3df backend, e.g. a venv's bin/python")
    managed_python: StringProperty(
        name="Base Python", subtype="FILE_PATH", default="",
        description="Python that creates the managed environment (empty: Blender's own)")
    managed_torch: EnumProperty(name="Torch Build", items=TORCH_BUILDS, default="CPU")
    managed_wheels: StringProperty(
        name="Offline Wheels", subtype="DIR_PATH", default="",
        description="A folder of wheels (torch and the backend's dependencies) to install from without network")

    def draw(self, context):
        from .backend import draw_backend_preferences

        layout = self.layout
        layout.use_property_split = True
        for name in ("extractor", "device", "effort", "checkpoint", "weights_dir", "cache_dir", "cache_limit_mb"):
            layout.prop(self, name)
        draw_backend_preferences(self, layout.box())
        row = layout.row()
        row.enabled = bpy.app.online_access
        row.prop(self, "allow_downloads")
        if not bpy.app.online_access:
            layout.label(text="Online access is off in Blender's System preferences", icon="INFO")
        row = layout.row()
        row.operator("sa3df.check_backend", icon="SYSTEM")
        row.operator("sa3df.release_worker", icon="CANCEL")


def preferences(context) -> SA3DF_AddonPreferences | None:
    addon = context.preferences.addons.get(__package__)
    return addon.preferences if addon is not None else None


def default_cache_dir() -> str:
    try:
        return bpy.utils.extension_path_user(__package__, path="cache", create=True)
    except (ValueError, AttributeError):  # not installed as an extension (e.g. run from the source tree)
        path = Path(tempfile.gettempdir(), "sa3df-cache")
        path.mkdir(exist_ok=True)
        return str(path)


def feature_settings(context, train: bool = True) -> dict:
    """The backend's feature settings (:class:`sa3df.features.settings.FeatureSettings`, as JSON) from
    the preferences."""
    from sa3df.features.settings import FeatureSettings

    prefs = preferences(context)
    get = (lambda name, default: getattr(prefs, name)) if prefs is not None else (lambda name, default: default)
    settings = FeatureSettings.for_effort(
        get("effort", "fast") if train else "off",
        extractor=get("extractor", "auto"),
        device=get("device", "auto"),
        checkpoint=bpy.path.abspath(get("checkpoint", "")) or None,
        weights_dir=bpy.path.abspath(get("weights_dir", "")) or None,
        cache_dir=bpy.path.abspath(get("cache_dir", "")) or default_cache_dir(),
        cache_limit_mb=get("cache_limit_mb", None),
        allow_downloads=bool(get("allow_downloads", False) and bpy.app.online_access),
        seed=0,
        up_axis="z",  # Blender's world is Z-up: meshes face alike about it, rendered cameras orbit it
    )
    return settings.to_params()
