"""DINOv2 features of rendered views, lifted to vertices (the ``"dino"`` extractor).

DINOv2 (any size, with or without registers) is loaded through ``transformers`` from a hub id or a
local folder. An image is resized to ``input_size`` (a multiple of the patch size; 518 = 37 × 14
as in Diff3F), normalised with the ImageNet mean/std, and the last layer's patch tokens after the
final LayerNorm (``last_hidden_state`` minus the class and register tokens) form the feature grid,
which :mod:`.lift` samples at each pixel and L2-normalises.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sa3df.core.device import default_dtype
from sa3df.core.mesh import Mesh
from sa3df.core.progress import ProgressFn
from sa3df.features.extractors.base import register
from sa3df.features.extractors.render import RenderedViews, shade
from sa3df.features.extractors.rendered import RenderedExtractor, images_to_tensor
from sa3df.features.extractors.weights import incomplete_weights_are_missing, require, resolve

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_DINO = "facebook/dinov2-base"


class DinoFeaturizer:
    """DINOv2 patch-token grids of images. Loads lazily, once; :meth:`release` frees the model.

    ``model`` is a hub id or a folder; ``input_size`` the square side fed to the ViT (rounded down
    to a multiple of the patch size).
    """

    def __init__(self, model: str = DEFAULT_DINO, device: torch.device | str = "cpu", input_size: int = 518,
                 allow_downloads: bool | None = None, weights_dir: str | None = None):
        self.source, self.device, self.input_size = model, torch.device(device), int(input_size)
        self.allow_downloads, self.weights_dir = allow_downloads, weights_dir
        self.model = None
        self.dtype = default_dtype(self.device)

    @property
    def dim(self) -> int:
        return int(self.config().hidden_size)

    def config(self):
        from transformers import AutoConfig

        source, cache_dir = resolve(self.source, self.weights_dir)
        local_only = require("DINOv2", [(self.source, "config.json")], self.allow_downloads, self.weights_dir)
        return AutoConfig.from_pretrained(source, local_files_only=local_only, cache_dir=cache_dir)

    def load(self) -> None:
        if self.model is not None:
            return
        from transformers import AutoModel

        source, cache_dir = resolve(self.source, self.weights_dir)
        local_only = require("DINOv2", [(self.source, "config.json")], self.allow_downloads, self.weights_dir)
        with incomplete_weights_are_missing("DINOv2", [self.source], local_only):
            model = AutoModel.from_pretrained(source, local_files_only=local_only, dtype=self.dtype,
                                              cache_dir=cache_dir)
        self.model = model.to(self.device).eval()

    def release(self) -> None:
        self.model = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1] → (B, D, h, w) float32 patch-token grid covering the image."""
        self.load()
        patch = int(self.model.config.patch_size)
        side = max(patch, self.input_size // patch * patch)
        x = F.interpolate(images.float(), size=(side, side), mode="bilinear", align_corners=False,
                          antialias=True)
        mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
        x = ((x - mean) / std).to(self.device, self.dtype)
        tokens = self.model(pixel_values=x).last_hidden_state  # after the final LayerNorm
        skip = 1 + int(getattr(self.model.config, "num_register_tokens", 0) or 0)
        grid = side // patch
        patches = tokens[:, skip:, :].float()
        return patches.reshape(len(x), grid, grid, -1).permute(0, 3, 1, 2).contiguous()


@register("dino")
class DinoExtractor(RenderedExtractor):
    """Rendered, shaded grey views → DINOv2 patch features → per-vertex means (D = the ViT's width).

    Settings (besides :class:`RenderedExtractor`'s): ``model`` (hub id or folder, default
    ``facebook/dinov2-base``), ``input_size`` (ViT input side). On CPU the default is 24 views.
    """

    name = "dino"

    def __init__(self, model: str = DEFAULT_DINO, input_size: int = 518, **settings):
        super().__init__(**settings)
        self.featurizer = DinoFeaturizer(model, self.device, input_size, self.allow_downloads, self.weights_dir)

    @property
    def dim(self) -> int:
        return self.featurizer.dim

    def cache_key(self) -> str:
        return f"{super().cache_key()}-{self.featurizer.source}-i{self.featurizer.input_size}"

    @classmethod
    def is_available(cls, model: str = DEFAULT_DINO, weights_dir: str | None = None, **settings) -> bool:
        from sa3df.features.extractors.weights import weights_present

        return weights_present(model, "config.json", weights_dir)

    def load(self) -> None:
        self.featurizer.load()

    def release(self) -> None:
        self.featurizer.release()

    def featurize(self, views: RenderedViews, mesh: Mesh,
                  progress: ProgressFn | None = None) -> list[list[torch.Tensor]]:
        images = images_to_tensor(shade(views), self.device, torch.float32)
        grids = self.featurizer(images)
        return [[g] for g in grids]
