"""The surface-aware network: a per-vertex auto-encoder whose bottleneck is the feature we keep.

Each vertex's base feature F (D,) is encoded to a unit vector f (E,) and decoded back to a unit
vector F̂ (D,). Training (:mod:`sa3df.features.train`) makes F̂ reconstruct F and makes feature distances
follow geodesic distances on the surface. Vertices are processed independently, so any number of
vertices, of any mesh, can go through in one batch.

Widths. For the paper's 2048-d Diff3F features the encoder is [2048, 1024, 512, 256], the decoder
its mirror. A small base feature (the geometric extractor's 54 dims) would leave no room to
re-arrange information if the network only narrowed, so :meth:`NetworkConfig.for_input_dim` widens
first: [D, 256, 256, 128] for D < 256 (see its docstring for the whole rule).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

EPS = 1e-8


@dataclass
class NetworkConfig:
    """Architecture of a :class:`SurfaceNetwork`, JSON-able (stored as ``config.json``).

    ``widths`` lists the encoder's layer widths including the input, e.g. [2048, 1024, 512, 256]:
    ``widths[0] == input_dim`` and ``widths[-1] == embedding_dim``. The decoder mirrors them.
    """

    input_dim: int
    widths: list[int] = field(default_factory=list)
    embedding_dim: int = 0

    def __post_init__(self):
        self.widths = [int(w) for w in self.widths] or [int(self.input_dim), 256]
        self.input_dim = int(self.input_dim)
        self.embedding_dim = int(self.embedding_dim or self.widths[-1])
        if len(self.widths) < 2:
            raise ValueError(f"NetworkConfig: widths {self.widths} need at least an input and an output width")
        if self.widths[0] != self.input_dim:
            raise ValueError(f"NetworkConfig: widths start at {self.widths[0]}, but input_dim is {self.input_dim}")
        if self.widths[-1] != self.embedding_dim:
            raise ValueError(
                f"NetworkConfig: widths end at {self.widths[-1]}, but embedding_dim is {self.embedding_dim}"
            )
        if min(self.widths) < 1:
            raise ValueError(f"NetworkConfig: every width must be positive, got {self.widths}")

    @classmethod
    def for_input_dim(cls, input_dim: int, embedding_dim: int | None = None) -> "NetworkConfig":
        """The default architecture for D = ``input_dim`` base features.

        - D ≥ 512 (Diff3F's 2048, DINOv2's 768...): halve three times down to E = 256 (or D/8 if
          larger): 2048 → [2048, 1024, 512, 256], exactly the paper's network.
        - 256 ≤ D < 512: [D, 256, 256, E] with E = 128.
        - D < 256 (the geometric extractor's 54): widen first, [D, 256, 256, E] with E = 128, so the
          first block can mix the few input channels into a richer code before it is compressed.

        ``embedding_dim`` overrides E.
        """
        d = int(input_dim)
        if d < 1:
            raise ValueError(f"input_dim must be positive, got {input_dim}")
        if d >= 512:
            e = embedding_dim or max(256, d // 8)
            widths = [d, d // 2, d // 4, e]
        else:
            e = embedding_dim or 128
            widths = [d, 256, 256, e]
        return cls(input_dim=d, widths=widths, embedding_dim=e)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "NetworkConfig":
        known = {k: data[k] for k in ("input_dim", "widths", "embedding_dim") if k in data}
        return cls(**known)


class Block(nn.Module):
    """Linear(in, in) → SiLU → LayerNorm(in) → Linear(in, out) → SiLU → LayerNorm(out), no skip (§2)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, in_dim)
        self.norm1 = nn.LayerNorm(in_dim)
        self.fc2 = nn.Linear(in_dim, out_dim)
        self.norm2 = nn.LayerNorm(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(nn.functional.silu(self.fc1(x)))
        return self.norm2(nn.functional.silu(self.fc2(x)))


def _stack(widths: list[int]) -> nn.Sequential:
    return nn.Sequential(*(Block(a, b) for a, b in zip(widths[:-1], widths[1:])))


class SurfaceNetwork(nn.Module):
    """Per-vertex encoder/decoder. ``encode`` gives the surface-aware features (unit rows).

    Parameter names (``encoder.<i>.fc1.weight`` ...) are what checkpoints store.
    """

    def __init__(self, config: NetworkConfig):
        super().__init__()
        self.config = config
        self.encoder = _stack(config.widths)
        self.decoder = _stack(config.widths[::-1])

    @property
    def input_dim(self) -> int:
        return self.config.input_dim

    @property
    def embedding_dim(self) -> int:
        return self.config.embedding_dim

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """(N, D) base features, any scale → (N, E) unit-norm surface-aware features.

        The input rows are L2-normalised here, so every caller (training, inference, fine-tuning)
        feeds the network the same thing; the reference fed raw features at inference only.
        """
        if features.shape[-1] != self.input_dim:
            raise ValueError(
                f"SurfaceNetwork expects {self.input_dim}-d base features, got {features.shape[-1]}-d"
            )
        features = features / (features.norm(dim=-1, keepdim=True) + EPS)
        return _unit(self.encoder(features))

    def decode(self, embedding: torch.Tensor) -> torch.Tensor:
        """(N, E) features → (N, D) unit-norm reconstruction of the normalised base features."""
        return _unit(self.decoder(embedding))

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, D) → (f (N, E), F̂ (N, D)), both with unit rows."""
        f = self.encode(features)
        return f, self.decode(f)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / (x.norm(dim=-1, keepdim=True) + EPS)
