"""Diff3F features (Dutt et al., CVPR 2024) from rendered views: the ``"diff3f"`` extractor.

Per view: the shaded grey render is the img2img input of Stable Diffusion 1.5, steered by a depth and
a normal ControlNet fed with the rendered depth and normal maps. While it denoises, a forward hook on
``unet.up_blocks[1]`` (the decoder stage the paper uses; 1280×32×32 at 512²) collects the UNet
features of the last 3/4 of the executed steps, each channel-L2-normalised per location and weighted
by linspace(0.1, 1). DINOv2 then describes the *generated* image. Each pixel's feature is
[0.5 · SD | 0.5 · DINO], each half L2-normalised (2048-d with SD 1.5 and ViT-B), lifted to vertices
by :mod:`.lift`.

Which classifier-free-guidance branch the UNet features come from (``unet_branch``): Diff3F's code
keeps batch element 0, which is the **negative-prompt** branch. We keep that default on purpose:
(1) surface-aware networks trained on Diff3F features (including the published weights) saw exactly
those features, so other branches shift the input distribution; (2) the negative prompt is the same
for every mesh, so the features do not depend on how well the user's prompt names the object (the
prompt still shapes the generated image DINO sees). ``"positive"`` and ``"mean"`` are offered.

Every view is seeded with ``seed`` (Diff3F reseeds 60 before each view) through its own CPU
generator, so a view's noise does not depend on batch size or device.
"""

from __future__ import annotations

import logging
import re
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from sa3df.core.device import default_dtype
from sa3df.core.mesh import Mesh
from sa3df.core.progress import ProgressFn, report
from sa3df.features.extractors.base import register
from sa3df.features.extractors.dino import DEFAULT_DINO, DinoFeaturizer
from sa3df.features.extractors.render import RenderedViews, depth_image, normal_image, shade
from sa3df.features.extractors.rendered import RenderedExtractor, images_to_tensor
from sa3df.features.extractors.weights import incomplete_weights_are_missing, require, resolve, weights_present

# The runwayml repository is gone from the hub; this is the maintained mirror of the same weights.
DEFAULT_SD = "stable-diffusion-v1-5/stable-diffusion-v1-5"
DEFAULT_CONTROLNETS = ("lllyasviel/control_v11f1p_sd15_depth", "lllyasviel/control_v11p_sd15_normalbae")
POSITIVE_SUFFIX = ",best quality,highly detailed,photorealistic,photo"
NEGATIVE_PROMPT = "lowres,low quality,monochrome,watermark"
BRANCHES = ("negative", "positive", "mean")


def prompt_from_name(name: str) -> str:
    """A subject for the prompt from a mesh name: 'GreenChair_01_1k' → 'green chair'."""
    words = re.sub(r"([a-z])([A-Z])", r"\1 \2", name).replace("_", " ").replace("-", " ").split()
    words = [w.lower() for w in words if not any(ch.isdigit() for ch in w)]
    return " ".join(words) or "object"


class UNetFeatureCollector:
    """Forward hook on a UNet stage that sums w_k · normalise(features) over the chosen steps.

    ``weights[i]`` is the weight of the i-th UNet call (0 skips it); ``batch`` the number of views;
    with classifier-free guidance the stage sees [negative ×B, positive ×B] and ``branch`` picks.
    """

    def __init__(self, weights: np.ndarray, batch: int, branch: str, guided: bool):
        self.weights, self.batch, self.branch, self.guided = weights, batch, branch, guided
        self.calls, self.total = 0, None

    def __call__(self, module, inputs, output):
        hidden = output[0] if isinstance(output, tuple) else output
        weight = float(self.weights[self.calls]) if self.calls < len(self.weights) else 0.0
        self.calls += 1
        if weight == 0.0:
            return
        hidden = hidden.float()
        expected = 2 * self.batch if self.guided else self.batch
        if hidden.shape[0] != expected:
            raise RuntimeError(f"UNet stage output has batch {hidden.shape[0]}, expected {expected}")
        if self.guided:
            negative, positive = hidden[: self.batch], hidden[self.batch:]
            branches = {"negative": negative, "positive": positive, "mean": (negative + positive) / 2}
            hidden = branches[self.branch]
        term = weight * F.normalize(hidden, dim=1)
        self.total = term if self.total is None else self.total + term


def step_weights(executed_steps: int, fraction: float = 0.75) -> np.ndarray:
    """(executed_steps,) weights: 0 for the first quarter, linspace(0.1, 1) over the last 3/4
    (18 of 24 with Diff3F's 30 steps × strength 0.8)."""
    kept = max(1, int(np.floor(executed_steps * fraction)))
    weights = np.zeros(executed_steps)
    weights[executed_steps - kept:] = np.linspace(0.1, 1.0, kept)
    return weights


@register("diff3f")
class Diff3FExtractor(RenderedExtractor):
    """Stable Diffusion 1.5 + depth/normal ControlNets + DINOv2 on rendered views, lifted to vertices.

    Settings (besides :class:`RenderedExtractor`'s): ``sd_model``, ``controlnets`` (depth, normal),
    ``dino_model`` — hub ids or folders; ``prompt`` (subject; None: from the mesh name),
    ``steps`` 30, ``strength`` 0.8, ``guidance`` 7, ``control_scale`` 0.8, ``eta`` 1, ``seed`` 60,
    ``unet_branch`` ("negative", see the module notes), ``normal_map`` ("bae" or "diff3f"),
    ``dino_input_size`` 518. fp16 on CUDA, float32 on CPU.
    """

    name = "diff3f"
    lift_weights = [0.5, 0.5]
    cpu_views = 4

    def __init__(self, sd_model: str = DEFAULT_SD, controlnets: tuple[str, str] = DEFAULT_CONTROLNETS,
                 dino_model: str = DEFAULT_DINO, prompt: str | None = None, steps: int = 30,
                 strength: float = 0.8, guidance: float = 7.0, control_scale: float = 0.8, eta: float = 1.0,
                 seed: int = 60, unet_branch: str = "negative", normal_map: str = "bae",
                 dino_input_size: int = 518, **settings):
        super().__init__(**settings)
        if unet_branch not in BRANCHES:
            raise ValueError(f"unet_branch must be one of {BRANCHES}, got '{unet_branch}'")
        if len(controlnets) != 2:
            raise ValueError(f"controlnets must be (depth, normal), got {len(controlnets)} entries")
        self.sd_model, self.controlnets = sd_model, tuple(controlnets)
        self.prompt, self.steps, self.strength = prompt, int(steps), float(strength)
        self.guidance = float(guidance)
        self.control_scale, self.eta, self.seed = float(control_scale), float(eta), int(seed)
        self.unet_branch, self.normal_map = unet_branch, normal_map
        self.dino = DinoFeaturizer(dino_model, self.device, dino_input_size, self.allow_downloads,
                                   self.weights_dir)
        self.pipe = None

    @property
    def dim(self) -> int:
        return self._unet_channels() + self.dino.dim

    def cache_key(self) -> str:
        return (f"{super().cache_key()}-{self.sd_model}-{'+'.join(self.controlnets)}-{self.dino.source}"
                f"-s{self.steps}x{self.strength}-g{self.guidance}-c{self.control_scale}-e{self.eta}"
                f"-seed{self.seed}-{self.unet_branch}-{self.normal_map}-p{self.prompt or 'name'}")

    @classmethod
    def is_available(cls, sd_model: str = DEFAULT_SD, controlnets=DEFAULT_CONTROLNETS,
                     dino_model: str = DEFAULT_DINO, weights_dir: str | None = None, **settings) -> bool:
        sources = cls._sources(sd_model, controlnets, dino_model)
        return all(weights_present(s, m, weights_dir) for s, m in sources)

    @staticmethod
    def _sources(sd_model, controlnets, dino_model) -> list[tuple[str, str]]:
        controlnet_sources = [(c, "config.json") for c in controlnets]
        return [(sd_model, "model_index.json"), *controlnet_sources, (dino_model, "config.json")]

    def _unet_channels(self) -> int:
        """Output channels of ``unet.up_blocks[1]`` from the UNet config (no weights loaded)."""
        from diffusers import UNet2DConditionModel

        local_only = require("Stable Diffusion", [(self.sd_model, "model_index.json")], self.allow_downloads,
                             self.weights_dir)
        source, cache_dir = resolve(self.sd_model, self.weights_dir)
        config = UNet2DConditionModel.load_config(source, subfolder="unet", local_files_only=local_only,
                                                  cache_dir=cache_dir)
        return int(list(reversed(config["block_out_channels"]))[1])

    def load(self) -> None:
        if self.pipe is not None:
            return
        from diffusers import ControlNetModel, DDIMScheduler, StableDiffusionControlNetImg2ImgPipeline

        sources = self._sources(self.sd_model, self.controlnets, self.dino.source)
        local_only = require("Diff3F (Stable Diffusion, ControlNets, DINOv2)", sources, self.allow_downloads,
                             self.weights_dir)
        dtype = default_dtype(self.device) if self.device.type == "cuda" else torch.float32
        diffusers_sources = [self.sd_model, *self.controlnets]
        with warnings.catch_warnings(), incomplete_weights_are_missing("Diff3F", diffusers_sources, local_only):
            warnings.simplefilter("ignore", FutureWarning)  # newer diffusers renamed torch_dtype
            controlnets = []
            for controlnet in self.controlnets:
                source, cache_dir = resolve(controlnet, self.weights_dir)
                controlnets.append(ControlNetModel.from_pretrained(
                    source, torch_dtype=dtype, local_files_only=local_only, cache_dir=cache_dir))
            source, cache_dir = resolve(self.sd_model, self.weights_dir)
            pipe = StableDiffusionControlNetImg2ImgPipeline.from_pretrained(
                source, controlnet=controlnets, torch_dtype=dtype, local_files_only=local_only,
                cache_dir=cache_dir, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
            )
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe.to(self.device)
        self.dino.load()

    def release(self) -> None:
        self.pipe = None
        self.dino.release()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def featurize(self, views: RenderedViews, mesh: Mesh,
                  progress: ProgressFn | None = None) -> list[list[torch.Tensor]]:
        sd_grids, generated = self._diffuse(views, mesh, progress)
        dino_grids = self.dino(generated)
        return [[sd, dino] for sd, dino in zip(sd_grids, dino_grids)]

    def _diffuse(self, views: RenderedViews, mesh: Mesh,
                 progress: ProgressFn | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Run img2img on a batch of views: (UNet feature grids (B, C, h, w), generated images (B, 3, H, W))."""
        batch = len(views)
        dtype = self.pipe.unet.dtype
        init = images_to_tensor(shade(views), self.device, dtype)
        depth = images_to_tensor(np.repeat(depth_image(views)[..., None], 3, axis=-1), self.device, dtype)
        normal = images_to_tensor(normal_image(views, self.normal_map), self.device, dtype)
        executed = min(int(self.steps * self.strength), self.steps)
        guided = self.guidance > 1.0
        collector = UNetFeatureCollector(step_weights(executed), batch, self.unet_branch, guided)
        handle = self.pipe.unet.up_blocks[1].register_forward_hook(collector)
        subject = self.prompt or prompt_from_name(mesh.name)
        quiet = _Quiet(type(self.pipe).__module__)  # "N ControlNets and N prompts" is expected here
        try:
            quiet.__enter__()
            result = self.pipe(
                prompt=[subject + POSITIVE_SUFFIX] * batch, negative_prompt=[NEGATIVE_PROMPT] * batch,
                image=init, control_image=[depth, normal], strength=self.strength,
                num_inference_steps=self.steps, guidance_scale=self.guidance, eta=self.eta,
                controlnet_conditioning_scale=[self.control_scale] * 2, output_type="pt",
                generator=[torch.Generator("cpu").manual_seed(self.seed) for _ in range(batch)],
                height=self.resolution, width=self.resolution,
                callback_on_step_end=_step_reporter(progress, executed),
            )
        finally:
            handle.remove()
            quiet.__exit__()
        if collector.total is None:
            raise RuntimeError(f"Diff3F: the UNet hook saw no denoising step ({executed} executed steps)")
        return collector.total, result.images.float()


def _step_reporter(progress: ProgressFn | None, executed: int):
    """A diffusers ``callback_on_step_end`` reporting denoising progress (a Cancelled raised by the
    callback stops the pipeline between steps)."""

    def on_step_end(pipe, step, timestep, tensors):
        report(progress, (step + 1) / max(executed, 1), f"diff3f: denoising step {step + 1} of {executed}")
        return tensors

    return on_step_end


class _Quiet:
    """Raise one logger to ERROR for the duration of a call."""

    def __init__(self, name: str):
        self.logger = logging.getLogger(name)
        self.level = self.logger.level

    def __enter__(self):
        self.logger.setLevel(logging.ERROR)

    def __exit__(self, *exc):
        self.logger.setLevel(self.level)
