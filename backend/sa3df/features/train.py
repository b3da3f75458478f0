"""Training the surface-aware network (method §2), with the reference's bottleneck and bugs fixed.

Per step: pick one mesh, sample ``anchors_per_step`` columns of its precomputed geodesic
:class:`~sa3df.core.geodesics.AnchorPool` and ``vertices_per_step`` vertices, and minimise

    L = w_rec · mean(1 − cos(F, F̂)) + w_con · mean |D̂[v, a] − (1 − cos(f_v, f_a)) / 2|

(w_con as given — the reference doubled it). No geodesic solve happens inside the loop. AdamW,
an EMA of the weights (returned), seeded sampling (bit-identical reruns on CPU), early stop on a
plateau of the windowed training loss, periodic checkpoints that :func:`train_surface_network`
can resume from (same samples, same config) with the same result as an uninterrupted run.
"""

from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from sa3df.core.device import choose_device, cpu_threads, idle_thread_count
from sa3df.core.geodesics import AnchorCache, AnchorPool
from sa3df.core.mesh import Mesh
from sa3df.features.network import NetworkConfig, SurfaceNetwork
from sa3df.features.optimizer import AdamW
from sa3df.core.progress import ProgressFn, report, sub_progress
from sa3df.features import checkpoint
from sa3df.features.train_config import TrainConfig, learning_rate

__all__ = ["TrainConfig", "TrainingSample", "TrainResult", "surface_losses", "train_surface_network", "embed"]


ANCHOR_SHARE = 0.1  # fraction of the progress bar given to building anchor pools
SMALL_NETWORK_WIDTH = 512  # networks no wider than this pick their thread count by idle CPUs
SMALL_NETWORK_THREADS = 4  # at most (measured up to 2: 1.7x a step; more cores are not tested here)


@dataclass
class TrainingSample:
    """One mesh and its base features ``features`` (N, D), one row per mesh vertex."""

    mesh: Mesh
    features: np.ndarray


@dataclass
class TrainResult:
    """``network``: the EMA weights, eval mode, on the training device. ``history``: one dict per
    step run here (``step`` counted from 1 across resumes, ``loss``, ``rec``, ``con``, ``lr``)."""

    network: SurfaceNetwork
    history: list[dict] = field(default_factory=list)
    stopped_early: bool = False

    @property
    def steps_done(self) -> int:
        return self.history[-1]["step"] if self.history else 0


@dataclass
class _MeshBatchSource:
    """Device-resident tensors of one sample: unit-row features, anchor ids, pool distances."""

    features: torch.Tensor
    anchors: torch.Tensor
    distances: torch.Tensor
    noise_std: float


def surface_losses(
    network: SurfaceNetwork, features: torch.Tensor, vertex_ids: torch.Tensor, anchor_ids: torch.Tensor,
    target_distances: torch.Tensor, noise: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_rec, L_con) for one mesh.

    ``features`` (N, D) unit rows; ``vertex_ids`` (V,) and ``anchor_ids`` (A,) index them;
    ``target_distances`` (V, A) normalised geodesic distances D̂[v, a] in [0, 1]; ``noise``
    (V + A, D) optional, added to the network input only. L_rec is over the V vertices.
    """
    clean = features[torch.cat([vertex_ids, anchor_ids])]
    embedding = network.encode(clean if noise is None else clean + noise)
    f_v, f_a = embedding[: len(vertex_ids)], embedding[len(vertex_ids):]
    reconstruction = network.decode(f_v)
    rec = (1.0 - (reconstruction * clean[: len(vertex_ids)]).sum(dim=-1)).mean()
    predicted = (1.0 - f_v @ f_a.T) / 2.0
    con = (predicted - target_distances).abs().mean()
    return rec, con


def train_surface_network(
    samples: list[TrainingSample], config: TrainConfig | None = None, anchor_cache: AnchorCache | None = None,
    resume_from: str | os.PathLike | None = None, progress: ProgressFn | None = None,
    init_network: SurfaceNetwork | None = None,
) -> TrainResult:
    """Train (or resume, or fine-tune) a :class:`SurfaceNetwork` on ``samples``.

    ``resume_from``: a checkpoint folder. With ``training_state.safetensors`` in it (written by
    ``checkpoint_every``) the run continues at its step with its optimiser, EMA and RNG state; a
    plain :func:`~sa3df.features.checkpoint.save_checkpoint` folder only provides starting weights.
    ``init_network`` also provides starting weights (fine-tuning; a copy is trained).
    Anchor pools come from ``anchor_cache`` (one is made in memory if None). ``progress`` is
    called after every step; raising :class:`~sa3df.core.progress.Cancelled` from it stops training
    with nothing written after the last complete checkpoint.
    """
    config = config or TrainConfig()
    return _train(samples, config, anchor_cache, resume_from, progress, init_network)


def _thread_count(config: TrainConfig, network: SurfaceNetwork, device: torch.device) -> int | None:
    """Torch CPU threads for the training loop (see ``TrainConfig.cpu_threads``); None: leave as is.
    A small network's steps take milliseconds: one thread per idle CPU, up to SMALL_NETWORK_THREADS."""
    if config.cpu_threads:
        return config.cpu_threads
    if device.type != "cpu" or max(network.config.widths) > SMALL_NETWORK_WIDTH:
        return None
    return idle_thread_count(SMALL_NETWORK_THREADS)


def _train(samples, config: TrainConfig, anchor_cache, resume_from, progress, init_network) -> TrainResult:
    samples = _checked(samples)
    device = choose_device(config.device)
    anchor_cache = anchor_cache or AnchorCache()
    sources = _prepare_sources(samples, config, anchor_cache, device, sub_progress(progress, 0.0, ANCHOR_SHARE))
    state = checkpoint.ResumePoint.read(resume_from) if resume_from else None
    if state is not None and state.network.input_dim != samples[0].features.shape[1]:
        raise ValueError(
            f"Checkpoint '{resume_from}' takes {state.network.input_dim}-d features, "
            f"the samples have {samples[0].features.shape[1]}-d"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)  # network initialisation; the caller's global RNG is left alone
        run = _Run(_initial_network(samples, config, state, init_network).to(device), config, device)
    run.sample_hashes = [s.mesh.content_hash() for s in samples]
    if state is not None and state.resumable:
        if state.info.get("samples", run.sample_hashes) != run.sample_hashes:
            raise ValueError(
                f"Checkpoint '{resume_from}' is a training run on other meshes; to fine-tune it on these, "
                "pass it as init_network (or compute_surface_features(checkpoint=...)) instead of resume_from"
            )
        start = state.restore(run)
    else:
        start = 0

    with cpu_threads(_thread_count(config, run.online, device)):
        return _loop(run, sources, start, progress)


def _loop(run: "_Run", sources: list["_MeshBatchSource"], start: int, progress) -> TrainResult:
    config = run.config
    result = TrainResult(network=run.ema)
    bar = _progress_bar(config.steps, start) if progress is None else None
    deadline = time.perf_counter() + config.max_seconds if config.max_seconds else math.inf
    try:
        for step in range(start + 1, config.steps + 1):
            record = run.step(step, sources[int(run.rng.integers(len(sources)))])
            result.history.append(record)
            stop = run.plateau.update(step, record["loss"]) or time.perf_counter() > deadline
            if config.checkpoint_every and (step % config.checkpoint_every == 0 or step == config.steps or stop):
                checkpoint.save_resumable(config.checkpoint_dir, run, step)
            message = f"training step {step}/{config.steps}: loss {record['loss']:.4f}"
            report(progress, ANCHOR_SHARE + (1 - ANCHOR_SHARE) * step / config.steps, message)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.4f}", refresh=False)
            if stop:
                result.stopped_early = True
                break
    finally:
        if bar is not None:
            bar.close()
    run.ema.eval()
    return result


class _Run:
    """The mutable state of one training run: online and EMA networks, optimiser, RNGs, plateau."""

    def __init__(self, online: SurfaceNetwork, config: TrainConfig, device: torch.device):
        self.online, self.config, self.device = online.train(), config, device
        self.online.requires_grad_(True)
        self.ema = copy.deepcopy(online).requires_grad_(False)
        self.optimizer = AdamW(online.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                               fused=device.type in ("cpu", "cuda"))
        self.rng = np.random.default_rng(config.seed)
        self.noise_gen = torch.Generator(device=device).manual_seed(config.seed)
        self.plateau = _Plateau(config)
        self.sample_hashes: list[str] = []

    def step(self, step: int, source: "_MeshBatchSource") -> dict:
        """One optimiser step on ``source``; returns the history record."""
        lr = learning_rate(self.config, step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        rec, con = _step_losses(self.online, source, self.config, self.rng, self.noise_gen, self.device)
        loss = self.config.w_rec * rec + self.config.w_con * con
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"Training diverged at step {step} (loss {loss.item()}); lower TrainConfig.lr (now {lr:g})"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        _update_ema(self.ema, self.online, self.config, step)
        return {"step": step, "loss": loss.item(), "rec": rec.item(), "con": con.item(), "lr": lr}


def embed(network: SurfaceNetwork, features: np.ndarray, device: str | torch.device | None = None,
          batch: int = 65536) -> np.ndarray:
    """Surface-aware features of base features ``features`` (N, D) → (N, E) float32, unit rows.

    Runs in batches of ``batch`` rows on ``device`` (default: where the network is), in half
    precision on CUDA; rows are re-normalised in float32.
    """
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2 or features.shape[1] != network.input_dim:
        raise ValueError(
            f"embed: the network takes (N, {network.input_dim}) features, got shape {features.shape}"
        )
    device = torch.device(device) if device is not None else next(network.parameters()).device
    network = network.to(device).eval()
    out = np.empty((len(features), network.embedding_dim), dtype=np.float32)
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
        for lo in range(0, len(features), batch):
            chunk = torch.from_numpy(features[lo:lo + batch]).to(device)
            f = network.encode(chunk).float()
            out[lo:lo + batch] = (f / (f.norm(dim=-1, keepdim=True) + 1e-8)).cpu().numpy()
    return out


def _progress_bar(total: int, start: int):
    """A tqdm bar for terminal runs (the CLI); silent when output is not a terminal."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, desc="training", leave=False, disable=None)


def _checked(samples: list[TrainingSample]) -> list[TrainingSample]:
    if not samples:
        raise ValueError("train_surface_network needs at least one TrainingSample")
    dims = {np.asarray(s.features).shape[1] if np.ndim(s.features) == 2 else -1 for s in samples}
    for s in samples:
        shape = np.shape(s.features)
        if len(shape) != 2 or shape[0] != s.mesh.n_vertices:
            raise ValueError(f"Mesh '{s.mesh.name}': features have shape {shape}, expected ({s.mesh.n_vertices}, D)")
        if not np.isfinite(s.features).all():
            raise ValueError(f"Mesh '{s.mesh.name}': features contain NaN or infinite values")
    if len(dims) != 1:
        raise ValueError(f"All samples need features of one width, got widths {sorted(dims)}")
    return samples


def _prepare_sources(samples, config, anchor_cache, device, progress) -> list[_MeshBatchSource]:
    """Anchor pools (cached; the only geodesic work) and features moved to the device once."""
    sources = []
    for i, s in enumerate(samples):
        stage = sub_progress(progress, i / len(samples), (i + 1) / len(samples))
        pool: AnchorPool = anchor_cache.get(s.mesh, config.anchor_pool_size, config.seed, progress=stage)
        f = torch.as_tensor(np.asarray(s.features, dtype=np.float32))
        f = f / (f.norm(dim=-1, keepdim=True) + 1e-8)
        sources.append(_MeshBatchSource(
            features=f.to(device), anchors=torch.as_tensor(pool.anchors, dtype=torch.long).to(device),
            distances=torch.as_tensor(pool.distances).to(device), noise_std=float(f.std()),
        ))
    return sources


def _initial_network(samples, config, state, init_network) -> SurfaceNetwork:
    if state is not None:
        return copy.deepcopy(state.network)
    dim = samples[0].features.shape[1]
    if init_network is not None:
        if init_network.input_dim != dim:
            raise ValueError(f"The starting network takes {init_network.input_dim}-d features, the samples have {dim}-d")
        return copy.deepcopy(init_network).train()
    return SurfaceNetwork(NetworkConfig.for_input_dim(dim, config.embedding_dim))


def _step_losses(network, source: _MeshBatchSource, config, rng, noise_gen, device):
    n, pool_size = len(source.features), len(source.anchors)
    vertex_ids = torch.as_tensor(rng.choice(n, size=min(config.vertices_per_step, n), replace=False), device=device)
    columns = torch.as_tensor(rng.choice(pool_size, size=min(config.anchors_per_step, pool_size), replace=False),
                              device=device)
    target = source.distances[vertex_ids][:, columns]
    noise = None
    if config.feature_noise > 0:
        shape = (len(vertex_ids) + len(columns), source.features.shape[1])
        noise = torch.randn(shape, generator=noise_gen, device=device) * (config.feature_noise * source.noise_std)
    return surface_losses(network, source.features, vertex_ids, source.anchors[columns], target, noise)


@torch.no_grad()
def _update_ema(ema: SurfaceNetwork, online: SurfaceNetwork, config: TrainConfig, step: int) -> None:
    t = step - config.ema_warmup_steps
    decay = 0.0 if t <= 0 else min(config.ema_beta, 1.0 - (1.0 + t) ** -config.ema_power)
    torch._foreach_lerp_(list(ema.parameters()), list(online.parameters()), 1.0 - decay)


class _Plateau:
    """Early stop when the windowed mean loss has not improved by ``min_delta`` for ``patience`` steps."""

    def __init__(self, config: TrainConfig):
        self.window, self.patience, self.min_delta = config.plateau_window, config.patience, config.min_delta
        self.best, self.since_best, self.window_sum = math.inf, 0, 0.0

    def update(self, step: int, loss: float) -> bool:
        self.window_sum += loss
        if step % self.window:
            return False
        mean, self.window_sum = self.window_sum / self.window, 0.0
        if mean < self.best - self.min_delta:
            self.best, self.since_best = mean, 0
        else:
            self.since_best += self.window
        return bool(self.patience) and self.since_best >= self.patience

    def state(self) -> dict:
        return {"best": self.best if math.isfinite(self.best) else None, "since_best": self.since_best,
                "window_sum": self.window_sum}

    def load(self, data: dict) -> None:
        self.best = math.inf if data.get("best") is None else float(data["best"])
        self.since_best, self.window_sum = int(data["since_best"]), float(data["window_sum"])
