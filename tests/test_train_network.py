"""The surface network's shapes, normalisation and checkpoints (ours and the reference's .pt)."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from sa3df.features import checkpoint
from sa3df.features.network import NetworkConfig, SurfaceNetwork
from sa3df.features.train import embed


def test_paper_architecture_for_2048_features():
    config = NetworkConfig.for_input_dim(2048)
    assert config.widths == [2048, 1024, 512, 256] and config.embedding_dim == 256
    net = SurfaceNetwork(config)
    encoder = sum(p.numel() for p in net.encoder.parameters())
    decoder = sum(p.numel() for p in net.decoder.parameters())
    assert round(encoder / 1e6, 2) == 8.27 and round(decoder / 1e6, 2) == 4.14  # method.md §2


def test_small_inputs_widen_first():
    config = NetworkConfig.for_input_dim(54)
    assert config.widths == [54, 256, 256, 128]
    assert json.loads(json.dumps(config.to_dict())) == config.to_dict()
    with pytest.raises(ValueError, match="input_dim"):
        NetworkConfig(input_dim=10, widths=[12, 4])


def test_encode_decode_give_unit_rows_and_ignore_input_scale():
    torch.manual_seed(0)
    net = SurfaceNetwork(NetworkConfig.for_input_dim(54)).eval()
    x = torch.randn(100, 54)
    f, reconstruction = net(x)
    assert f.shape == (100, 128) and reconstruction.shape == (100, 54)
    torch.testing.assert_close(f.norm(dim=1), torch.ones(100))
    torch.testing.assert_close(reconstruction.norm(dim=1), torch.ones(100))
    # normalisation happens inside encode: raw (unnormalised) features give the same embedding
    torch.testing.assert_close(net.encode(x * 37.0), net.encode(x / x.norm(dim=1, keepdim=True)))
    with pytest.raises(ValueError, match="54-d"):
        net.encode(torch.randn(3, 20))


def test_embed_matches_encode_in_batches():
    torch.manual_seed(1)
    net = SurfaceNetwork(NetworkConfig.for_input_dim(30)).eval()
    x = np.random.default_rng(0).normal(size=(257, 30)).astype(np.float32)
    out = embed(net, x, batch=64)
    assert out.dtype == np.float32 and out.shape == (257, 128)
    np.testing.assert_allclose(out, net.encode(torch.from_numpy(x)).detach().numpy(), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(2)
    net = SurfaceNetwork(NetworkConfig.for_input_dim(54)).eval()
    checkpoint.save_checkpoint(tmp_path / "ck", net, {"extractor": "geometric", "steps": 7})
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["config.json", "model.safetensors"]
    loaded, metadata = checkpoint.load_checkpoint(tmp_path / "ck")
    assert metadata == {"extractor": "geometric", "steps": 7}
    x = np.random.default_rng(3).normal(size=(50, 54)).astype(np.float32)
    np.testing.assert_array_equal(embed(loaded, x), embed(net, x))
    with pytest.raises(ValueError, match="no config.json"):
        checkpoint.load_checkpoint(tmp_path / "missing")


# --- a faithful re-creation of the reference module layout (networks.py) and its EMA wrapper ----------

class _RefBlock(nn.Module):
    def __init__(self, i, o):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(i, i), nn.Linear(i, o)
        self.silu1, self.silu2 = nn.SiLU(), nn.SiLU()
        self.norm1, self.norm2 = nn.LayerNorm(i), nn.LayerNorm(o)
        self.block1 = nn.Sequential(self.fc1, self.silu1)  # the same modules again: alias keys
        self.block2 = nn.Sequential(self.fc2, self.silu2, self.norm2)

    def forward(self, x):
        return self.block2(self.norm1(self.block1(x)))


class _RefGeneric(nn.Module):
    def __init__(self, widths):
        super().__init__()
        self.net = nn.Sequential(*(_RefBlock(a, b) for a, b in zip(widths[:-1], widths[1:])))

    def forward(self, x):
        return self.net(x)


class _RefFeatureNetwork(nn.Module):
    def __init__(self, feature_dim, num_layers=3):
        super().__init__()
        widths = [feature_dim // 2**n for n in range(num_layers + 1)]
        self.encoder, self.decoder = _RefGeneric(widths), _RefGeneric(widths[::-1])

    def encode(self, F):
        f = self.encoder(F[:, None, :])
        return (f / (f.norm(dim=-1, keepdim=True) + 1e-8))[:, 0]


class _RefEMA(nn.Module):
    """ema_pytorch.EMA's state layout: online_model.*, ema_model.*, and step/initted buffers."""

    def __init__(self, model, ema_model):
        super().__init__()
        self.online_model, self.ema_model = model, ema_model
        self.register_buffer("initted", torch.tensor(True))
        self.register_buffer("step", torch.tensor(1234))


def test_reference_feature_network_pt_loads_with_ema_weights(tmp_path):
    torch.manual_seed(4)
    online, averaged = _RefFeatureNetwork(256), _RefFeatureNetwork(256)  # different random weights
    wrapper = _RefEMA(online, averaged)
    state = wrapper.state_dict()
    assert "ema_model.encoder.net.0.block1.0.weight" in state and "online_model.encoder.net.2.norm2.bias" in state
    path = tmp_path / "feature_network.pt"
    torch.save({"model_state_dict": state, "optimizer_state_dict": {"state": {}, "param_groups": []},
                "iter": 1234}, path)

    net = checkpoint.load_reference_checkpoint(path)
    assert net.config.widths == [256, 128, 64, 32]
    F = torch.randn(20, 256)
    F = F / F.norm(dim=1, keepdim=True)  # the reference encodes normalised features
    with torch.no_grad():
        torch.testing.assert_close(net.encode(F), averaged.encode(F))
        assert not torch.allclose(net.encode(F), online.encode(F), atol=1e-3)
        online_net = checkpoint.load_reference_checkpoint(path, prefer="online_model")
        torch.testing.assert_close(online_net.encode(F), online.encode(F))


def test_bare_reference_state_dict_loads_and_junk_is_refused(tmp_path):
    torch.manual_seed(5)
    reference = _RefFeatureNetwork(64)
    torch.save(reference.state_dict(), tmp_path / "bare.pt")
    net = checkpoint.load_reference_checkpoint(tmp_path / "bare.pt")
    F = torch.nn.functional.normalize(torch.randn(7, 64), dim=1)
    with torch.no_grad():
        torch.testing.assert_close(net.encode(F), reference.encode(F))
    torch.save({"iter": torch.tensor(3)}, tmp_path / "junk.pt")
    with pytest.raises(ValueError, match="no encoder/decoder weights"):
        checkpoint.load_reference_checkpoint(tmp_path / "junk.pt")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    (tmp_path / "bad" / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="not valid JSON"):
        checkpoint.load_checkpoint(tmp_path / "bad")
