"""Surface-network checkpoints: a folder with ``config.json`` + ``model.safetensors`` (no pickle).

``config.json`` holds the architecture (:class:`~sa3df.features.network.NetworkConfig`) and free metadata
(extractor name, training settings, step...). ``model.safetensors`` holds the weights the network
runs with (the EMA weights after training). A training run may add ``training_state.safetensors``
(online weights, optimiser moments, RNG state) so it can be resumed; see :mod:`sa3df.features.train`.

:func:`load_reference_checkpoint` reads the reference implementation's ``feature_network.pt``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from sa3df.core.storage import atomic_write
from sa3df.features.network import NetworkConfig, SurfaceNetwork

FORMAT = "sa3df-surface-network"
VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TRAINING_STATE_FILE = "training_state.safetensors"


def save_checkpoint(folder: str | os.PathLike, network: SurfaceNetwork, metadata: dict | None = None) -> Path:
    """Write ``network`` and JSON-able ``metadata`` to ``folder`` (created). Returns the folder.

    Files are written to temporary names and renamed, so a crash never leaves a half-written
    checkpoint under the real names.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in network.state_dict().items()}
    atomic_write(folder / WEIGHTS_FILE, lambda tmp: save_file(weights, str(tmp), metadata={"format": FORMAT}))
    config = {"format": FORMAT, "version": VERSION, "network": network.config.to_dict(), "metadata": metadata or {}}
    text = json.dumps(config, indent=2, sort_keys=True)
    atomic_write(folder / CONFIG_FILE, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return folder


def load_checkpoint(folder: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[SurfaceNetwork, dict]:
    """Read a folder written by :func:`save_checkpoint` (or a reference ``feature_network.pt`` file, see
    :func:`load_reference_checkpoint`). Returns (network in eval mode, metadata).

    Raises ``ValueError`` naming the folder when a file is missing or the format is foreign.
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    if folder.is_file() and folder.suffix == ".pt":  # the reference implementation's feature_network.pt
        return load_reference_checkpoint(folder).to(device), {}
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.exists():
            raise ValueError(f"Checkpoint '{folder}' has no {path.name}")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"Checkpoint '{folder}': {CONFIG_FILE} is not valid JSON ({error})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ValueError(f"Checkpoint '{folder}': {CONFIG_FILE} is not an sa3df surface-network config")
    if not isinstance(config.get("network"), dict):
        raise ValueError(f"Checkpoint '{folder}': {CONFIG_FILE} has no 'network' section (the architecture)")
    try:
        network = SurfaceNetwork(NetworkConfig.from_dict(config["network"]))
    except (TypeError, ValueError, KeyError) as error:
        raise ValueError(f"Checkpoint '{folder}': the 'network' section of {CONFIG_FILE} is invalid ({error})") from None
    weights = _read_weights(weights_path, load_file)
    try:
        network.load_state_dict(weights)
    except RuntimeError as error:
        raise ValueError(f"Checkpoint '{folder}': weights do not fit its config.json ({error})") from None
    return network.to(device).eval(), config.get("metadata", {})


def _read_weights(path: Path, load_file) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; ``ValueError`` when it is damaged or holds NaN/inf."""
    try:
        weights = load_file(str(path))
    except Exception as error:  # noqa: BLE001 - safetensors raises its own SafetensorError (truncated, garbage)
        raise ValueError(f"'{path}' is damaged or not a safetensors file ({error})") from None
    _require_finite(weights, path)
    return weights


def _require_finite(weights: dict[str, torch.Tensor], path: Path) -> None:
    bad = [name for name, value in weights.items() if value.is_floating_point() and not torch.isfinite(value).all()]
    if bad:
        raise ValueError(f"'{path}': weights {', '.join(sorted(bad)[:3])} hold NaN or infinite values "
                         "(a diverged or damaged checkpoint)")


def load_reference_checkpoint(path: str | os.PathLike, prefer: str = "ema_model") -> SurfaceNetwork:
    """Load the reference implementation's ``feature_network.pt`` into a :class:`SurfaceNetwork`.

    The file is a dict with ``model_state_dict`` (an ``ema_pytorch.EMA`` wrapper's state:
    ``online_model.*`` and ``ema_model.*`` copies of the network, plus ``step``/``initted``),
    ``optimizer_state_dict`` and ``iter``. Each Block's layers appear twice, as ``fc1/fc2/norm1/
    norm2`` and as the aliases ``block1.0/block2.0/block2.2``; the aliases are dropped. The EMA
    weights are taken (as the reference's inference does), or ``prefer="online_model"``. A bare
    network state dict (no wrapper) also loads. Read with ``weights_only=True``: no code runs.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"Reference checkpoint '{path}' does not exist")
    try:
        raw = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises RuntimeError, UnpicklingError, EOFError...
        raise ValueError(f"Reference checkpoint '{path}' cannot be read safely ({type(error).__name__}: "
                         f"{str(error).splitlines()[0] if str(error) else ''})") from None
    state = raw.get("model_state_dict", raw) if isinstance(raw, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"Reference checkpoint '{path}' does not hold a state dict")
    weights = _reference_network_weights(state, prefer)
    if not weights:
        raise ValueError(f"Reference checkpoint '{path}' has no encoder/decoder weights")
    _require_finite(weights, path)
    config = _config_from_weights(weights, path)
    network = SurfaceNetwork(config)
    try:
        network.load_state_dict(weights)
    except RuntimeError as error:
        raise ValueError(f"Reference checkpoint '{path}': unexpected layout ({error})") from None
    return network.eval()


def save_training_state(
    folder: str | os.PathLike, network: SurfaceNetwork, tensors: dict[str, torch.Tensor], info: dict,
    metadata: dict | None = None,
) -> Path:
    """A resumable checkpoint: :func:`save_checkpoint` of ``network`` plus ``training_state.safetensors``
    holding ``tensors`` (optimiser moments, online weights, RNG state...) and JSON ``info``."""
    from safetensors.torch import save_file

    folder = save_checkpoint(folder, network, metadata)
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    text = json.dumps(info)
    atomic_write(folder / TRAINING_STATE_FILE, lambda tmp: save_file(tensors, str(tmp), metadata={"info": text}))
    return folder


def load_training_state(folder: str | os.PathLike) -> tuple[dict | None, dict | None]:
    """(tensors, info) saved by :func:`save_training_state`, or (None, None) when the folder has none.

    ``info["folder"]`` is set to ``folder``.
    """
    from safetensors import safe_open

    path = Path(folder) / TRAINING_STATE_FILE
    if not path.exists():
        return None, None
    with safe_open(str(path), framework="pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        info = json.loads(handle.metadata()["info"])
    info["folder"] = str(folder)
    return tensors, info


def save_resumable(folder: str | os.PathLike, run, step: int) -> None:
    """Checkpoint a training run (``sa3df.features.train``'s ``_Run``: online/EMA networks, optimiser, RNGs,
    plateau tracker) at ``step``: the EMA weights as a normal checkpoint plus everything a resume
    needs, all as safetensors/JSON."""
    tensors = {f"online.{k}": v for k, v in run.online.state_dict().items()}
    optimizer_state = run.optimizer.state_dict()
    for index, values in optimizer_state["state"].items():
        for name, value in values.items():
            tensors[f"optimizer.{index}.{name}"] = torch.as_tensor(value)
    tensors["noise_generator"] = run.noise_gen.get_state()
    info = {"step": step, "param_groups": optimizer_state["param_groups"], "plateau": run.plateau.state(),
            "numpy_rng": run.rng.bit_generator.state, "samples": list(run.sample_hashes)}
    metadata = {"step": step, "train_config": run.config.to_dict()}
    save_training_state(folder, run.ema, tensors, info, metadata)


@dataclass
class ResumePoint:
    """A checkpoint folder read for resuming: its EMA network and, if present, its training state."""

    network: SurfaceNetwork
    tensors: dict | None
    info: dict | None

    @classmethod
    def read(cls, folder) -> "ResumePoint":
        network, _ = load_checkpoint(folder)
        tensors, info = load_training_state(folder)
        if tensors is not None:  # the online weights keep training; the EMA weights are restored below
            network.load_state_dict({k[len("online."):]: v for k, v in tensors.items() if k.startswith("online.")})
        return cls(network.train(), tensors, info)

    @property
    def resumable(self) -> bool:
        return self.tensors is not None

    def restore(self, run) -> int:
        """Load EMA weights, optimiser moments, RNG and plateau state into ``run``; returns the step reached."""
        ema_network, _ = load_checkpoint(self.info["folder"])
        run.ema.load_state_dict(ema_network.state_dict())
        state = {int(i): {} for i in {k.split(".")[1] for k in self.tensors if k.startswith("optimizer.")}}
        for key, value in self.tensors.items():
            if key.startswith("optimizer."):
                _, index, name = key.split(".", 2)
                state[int(index)][name] = value
        run.optimizer.load_state_dict({"state": state, "param_groups": self.info["param_groups"]})
        run.rng.bit_generator.state = self.info["numpy_rng"]
        run.noise_gen.set_state(self.tensors["noise_generator"])
        run.plateau.load(self.info["plateau"])
        return int(self.info["step"])


_ALIASES = {"block1.0.": "fc1.", "block2.0.": "fc2.", "block2.2.": "norm2."}


def _reference_network_weights(state: dict, prefer: str) -> dict[str, torch.Tensor]:
    """Pick one copy of the network out of an EMA wrapper state and rename it to our keys."""
    prefixes = [prefer + ".", "ema_model.", "online_model.", ""]
    for prefix in prefixes:
        picked = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix) and ".net." in k}
        if prefix == "" or picked:
            break
    out = {}
    for key, value in picked.items():
        if not isinstance(value, torch.Tensor) or not key.startswith(("encoder.", "decoder.")):
            continue
        key = key.replace(".net.", ".", 1)
        if any(alias in key for alias in _ALIASES):
            continue  # duplicate of an fc1/fc2/norm2 tensor
        out[key] = value.float()
    return out


def _config_from_weights(weights: dict[str, torch.Tensor], path: Path) -> NetworkConfig:
    """Encoder widths from the shapes of ``encoder.<i>.fc2.weight`` (out, in)."""
    blocks = sorted(int(m.group(1)) for k in weights if (m := re.match(r"encoder\.(\d+)\.fc2\.weight$", k)))
    if not blocks or blocks != list(range(len(blocks))):
        raise ValueError(f"Reference checkpoint '{path}': encoder blocks are missing or out of order")
    widths = [int(weights[f"encoder.{blocks[0]}.fc2.weight"].shape[1])]
    widths += [int(weights[f"encoder.{i}.fc2.weight"].shape[0]) for i in blocks]
    return NetworkConfig(input_dim=widths[0], widths=widths, embedding_dim=widths[-1])
