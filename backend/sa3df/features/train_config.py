"""Settings of a training run (:class:`TrainConfig`) and its learning-rate schedule."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass
class TrainConfig:
    """Settings of one training run. The defaults suit test-time training on the meshes at hand:
    600 steps of one mesh each, 256 vertices and 64 anchors per step, AdamW lr 3e-3 (fused) with a
    30-step warm-up and cosine decay. Measured on two walk-cycle frames each of the quaternius fox
    (frames 2→14, 926 vertices) and man (1→9, 940), mean geodesic matching error 0.0053 / 0.0091·√area
    with these defaults vs 0.0057 / 0.0098 with the earlier ones (1024 vertices per step, lr 1e-3,
    50-step warm-up), which took 2.7× the CPU time; 128 vertices per step: 0.0055 / 0.0096; 300
    steps of 256 (lr 1e-3): clearly worse (0.0074 / 0.0150); a narrower [D, 128, 128, 128] network:
    0.0067 / 0.0091 at half the time. :meth:`paper` gives the reference's settings.

    ``steps`` is the total step count (a resumed run continues up to it); each step draws one mesh,
    ``vertices_per_step`` of its vertices and ``anchors_per_step`` of its ``anchor_pool_size`` pool
    anchors. ``lr_warmup_steps`` and ``lr_schedule`` ("constant" as in the paper, or "cosine" decay
    to ``lr_min_ratio``·lr) shape the learning rate. The EMA copies the online weights for
    ``ema_warmup_steps`` steps, then averages with decay min(``ema_beta``, 1 − (1 + t)^−``ema_power``),
    t = steps since warm-up (ema_pytorch's schedule). ``feature_noise`` adds N(0, (p·std F)²) to
    the input features (the target stays clean).
    Early stop: every ``plateau_window`` steps the window's mean loss is compared with the best;
    after ``patience`` steps without a gain of ``min_delta`` training stops (``patience=0``: never).
    ``checkpoint_every`` > 0 writes a resumable checkpoint to ``checkpoint_dir`` that often and at the end.
    ``cpu_threads`` sets torch's CPU threads during training (restored afterwards); None: for
    networks no wider than 512, one thread per CPU idle when training starts (at most 4; their
    matrices are small, and threads on busy cores made a step up to 4.5× slower than one thread),
    torch's setting otherwise. Thread counts change float rounding (~1e-7), so runs that must be
    bit-identical across machines or loads set it.
    ``max_seconds`` stops training (like an early stop) once that much wall time has passed since
    the first step; runs cut by time are not reproducible step for step.
    """

    steps: int = 600
    lr: float = 3e-3
    weight_decay: float = 0.01
    w_rec: float = 1.0
    w_con: float = 1.0
    anchors_per_step: int = 64
    vertices_per_step: int = 256
    anchor_pool_size: int = 128
    ema_beta: float = 0.999
    ema_power: float = 0.75
    ema_warmup_steps: int = 100
    lr_warmup_steps: int = 30
    lr_schedule: str = "cosine"
    lr_min_ratio: float = 0.05
    feature_noise: float = 0.0
    seed: int = 0
    device: str = "auto"
    patience: int = 0
    min_delta: float = 1e-4
    plateau_window: int = 50
    checkpoint_every: int = 0
    checkpoint_dir: str | None = None
    embedding_dim: int | None = None
    cpu_threads: int | None = None
    max_seconds: float | None = None

    def __post_init__(self):
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"TrainConfig.lr_schedule must be 'constant' or 'cosine', not '{self.lr_schedule}'")
        for name in ("steps", "anchors_per_step", "vertices_per_step", "anchor_pool_size", "plateau_window"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be at least 1, got {getattr(self, name)}")
        if self.checkpoint_every and not self.checkpoint_dir:
            raise ValueError("TrainConfig.checkpoint_every is set but checkpoint_dir is not")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def test_time(cls, **overrides) -> "TrainConfig":
        """The preset for training on just the meshes at hand: the defaults (600 steps, lr 3e-3,
        30-step warm-up, cosine decay)."""
        return cls(**overrides)

    @classmethod
    def paper(cls, **overrides) -> "TrainConfig":
        """The reference's optimiser settings: AdamW lr 1e-4 (constant, no warm-up), 60 000 steps of
        one mesh each, EMA β 0.9999 copying for the first 6 000 steps, 100 anchors per step."""
        settings = dict(steps=60_000, lr=1e-4, lr_warmup_steps=0, lr_schedule="constant", ema_beta=0.9999,
                        ema_warmup_steps=6_000, anchors_per_step=100, vertices_per_step=1024)
        settings.update(overrides)
        return cls(**settings)


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warm-up over ``lr_warmup_steps``, then constant or cosine decay to lr·lr_min_ratio."""
    if config.lr_warmup_steps and step <= config.lr_warmup_steps:
        return config.lr * step / config.lr_warmup_steps
    if config.lr_schedule == "constant":
        return config.lr
    span = max(config.steps - config.lr_warmup_steps, 1)
    progress = min(max(step - config.lr_warmup_steps, 0) / span, 1.0)
    low = config.lr * config.lr_min_ratio
    return low + (config.lr - low) * 0.5 * (1.0 + math.cos(math.pi * progress))
