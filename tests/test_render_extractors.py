"""The dino and diff3f extractors end to end on a real chair, through tiny randomly initialised models
of the real classes saved with save_pretrained (so the same from_pretrained path runs). Offline."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before any Hugging Face import: no test downloads anything

import json  # noqa: E402
import string  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from sa3df.core import mesh as meshes  # noqa: E402
from sa3df.features.extractors import MissingWeightsError, choose_extractor, create_extractor  # noqa: E402
from sa3df.features.extractors.diff3f import UNetFeatureCollector, prompt_from_name, step_weights  # noqa: E402
from sa3df.core.progress import Cancelled  # noqa: E402

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

CHAIR = "meshes/polyhaven/painted_wooden_chair_01_1k.obj"
DINO_DIM, UNET_STAGE_DIM = 24, 16
FAST = dict(device="cpu", resolution=64, views=3, batch_size=2)


def save_tiny_models(root: Path) -> dict:
    """Tiny SD 1.5-shaped pipeline (VAE ×8 downsampling, 2-level UNet), two ControlNets and a DINOv2."""
    from diffusers import AutoencoderKL, ControlNetModel, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in string.ascii_lowercase + string.digits + ",.":
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    (root / "vocab.json").write_text(json.dumps(vocab))
    (root / "merges.txt").write_text("#version: 0.2\n")  # characters only, no merges
    tokenizer = CLIPTokenizer(vocab=str(root / "vocab.json"), merges=str(root / "merges.txt"), model_max_length=77)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=1,
        max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1))
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(UNET_STAGE_DIM, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16, attention_head_dim=4, norm_num_groups=8)
    vae = AutoencoderKL(
        block_out_channels=(8, 8, 8, 8), down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, norm_num_groups=4, layers_per_block=1)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False).save_pretrained(root / "sd")
    for name in ("depth", "normal"):
        controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 8, 8, 8))
        controlnet.save_pretrained(root / f"controlnet_{name}")
    Dinov2Model(Dinov2Config(hidden_size=DINO_DIM, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
                             patch_size=14, image_size=56)).save_pretrained(root / "dino")
    return {"sd_model": str(root / "sd"), "dino_model": str(root / "dino"),
            "controlnets": (str(root / "controlnet_depth"), str(root / "controlnet_normal"))}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and on a busy machine thread spin-waits cost 100×."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    return save_tiny_models(tmp_path_factory.mktemp("tiny_models"))


@pytest.fixture(scope="session")
def chair(data_dir):
    return meshes.load(data_dir / CHAIR)


def diff3f(tiny_models, **settings):
    options = dict(FAST, steps=4, strength=0.75, dino_input_size=56, **tiny_models)
    options.update(settings)
    return create_extractor("diff3f", **options)


def neighbour_vs_random_cosine(mesh, features):
    centred = features - features.mean(axis=0)  # random tiny models share a large common component
    unit = centred / np.linalg.norm(centred, axis=1, keepdims=True)
    edges = np.concatenate([mesh.faces[:, [0, 1]], mesh.faces[:, [1, 2]]])
    rng = np.random.default_rng(0)
    pairs = rng.integers(0, mesh.n_vertices, size=(len(edges), 2))
    return (unit[edges[:, 0]] * unit[edges[:, 1]]).sum(1).mean(), (unit[pairs[:, 0]] * unit[pairs[:, 1]]).sum(1).mean()


def test_dino_extractor_end_to_end(tiny_models, chair):
    extractor = create_extractor("dino", model=tiny_models["dino_model"], input_size=56, **FAST)
    assert extractor.name == "dino" and extractor.dim == DINO_DIM
    calls = []
    features = extractor.extract(chair, progress=lambda f, msg: calls.append(f))
    assert features.shape == (chair.n_vertices, DINO_DIM) and features.dtype == np.float32
    assert np.isfinite(features).all()
    norms = np.linalg.norm(features, axis=1)
    assert norms.max() <= 1 + 1e-5 and norms.min() > 0.3  # means of unit pixel features, every vertex filled
    assert calls[0] == 0.0 and calls[-1] == 1.0 and calls == sorted(calls)
    # Views agree on a vertex: features vary smoothly over the surface.
    neighbours, random_pairs = neighbour_vs_random_cosine(chair, features)
    assert neighbours > 0.5 and neighbours > random_pairs + 0.3, (neighbours, random_pairs)
    np.testing.assert_array_equal(features, extractor.extract(chair))  # deterministic
    extractor.release()
    assert extractor.featurizer.model is None
    np.testing.assert_array_equal(features, extractor.extract(chair))  # reloads after release


def test_diff3f_extractor_end_to_end(tiny_models, chair):
    extractor = diff3f(tiny_models)
    assert extractor.name == "diff3f" and extractor.dim == UNET_STAGE_DIM + DINO_DIM
    features = extractor.extract(chair)
    assert features.shape == (chair.n_vertices, UNET_STAGE_DIM + DINO_DIM) and np.isfinite(features).all()
    sd, dino = features[:, :UNET_STAGE_DIM], features[:, UNET_STAGE_DIM:]
    for half in (sd, dino):  # each half is a mean of 0.5-scaled unit vectors
        norms = np.linalg.norm(half, axis=1)
        assert norms.max() <= 0.5 + 1e-5 and norms.min() > 0.1
    np.testing.assert_array_equal(features, extractor.extract(chair))  # seeded per view

    reseeded = diff3f(tiny_models, seed=7).extract(chair)
    assert np.abs(reseeded - features).max() > 1e-3

    # The positive branch differs in the UNet half only: the generated image, so DINO's half, is the same.
    positive = diff3f(tiny_models, unet_branch="positive").extract(chair)
    np.testing.assert_allclose(positive[:, UNET_STAGE_DIM:], dino, atol=1e-5)
    assert np.abs(positive[:, :UNET_STAGE_DIM] - sd).max() > 1e-3


def test_diff3f_views_do_not_depend_on_batching(tiny_models, chair):
    one = diff3f(tiny_models, views=2, batch_size=1).extract(chair)
    two = diff3f(tiny_models, views=2, batch_size=2).extract(chair)
    np.testing.assert_allclose(one, two, atol=1e-4)


def test_step_weights_and_branch_selection():
    weights = step_weights(24)  # Diff3F: 30 steps × strength 0.8
    assert (weights[:6] == 0).all()
    np.testing.assert_allclose(weights[6:], np.linspace(0.1, 1.0, 18))
    collector = UNetFeatureCollector(np.array([0.0, 1.0, 0.5]), batch=2, branch="negative", guided=True)
    negative, positive = torch.full((2, 3, 1, 1), 2.0), torch.full((2, 3, 1, 1), -1.0)
    negative[1, 0] = 0.0
    for _ in range(3):
        collector(None, None, torch.cat([negative, positive]))
    expected = 1.5 * torch.nn.functional.normalize(negative, dim=1)
    torch.testing.assert_close(collector.total, expected)
    with pytest.raises(RuntimeError, match="expected 4"):
        UNetFeatureCollector(np.ones(1), 2, "negative", True)(None, None, torch.zeros(3, 3, 1, 1))


def test_missing_weights_name_the_models_and_the_way_out(tiny_models, chair, tmp_path):
    with pytest.raises(MissingWeightsError, match="facebook/dinov2-sa3df-missing") as error:
        create_extractor("dino", model="facebook/dinov2-sa3df-missing", **FAST).extract(chair)
    assert "online_access" in str(error.value) and "hf download" in str(error.value)
    # HF_HUB_OFFLINE wins over allowing downloads: still no network.
    with pytest.raises(MissingWeightsError):
        create_extractor("dino", model="facebook/dinov2-sa3df-missing", allow_downloads=True, **FAST).extract(chair)
    missing = str(tmp_path / "no-controlnet")
    extractor = diff3f(tiny_models, controlnets=(tiny_models["controlnets"][0], missing))
    with pytest.raises(MissingWeightsError, match="no-controlnet"):
        extractor.extract(chair)


def test_choose_extractor_falls_back_by_what_is_present(tiny_models):
    nothing = dict(dino_model="facebook/dinov2-sa3df-missing", sd_model="sd-sa3df-missing")
    assert choose_extractor("auto", device="cpu", **nothing).name == "geometric"
    dino = choose_extractor("auto", device="cpu", views=5, **dict(tiny_models))
    assert dino.name == "dino" and dino.views == 5  # diff3f needs a CUDA GPU
    assert dino.featurizer.source == tiny_models["dino_model"]
    assert choose_extractor("diff3f", device="cpu", **tiny_models).name == "diff3f"
    assert choose_extractor("geometric", views=3, steps=5).name == "geometric"  # foreign settings dropped


def test_cancel_between_views_leaves_the_extractor_usable(tiny_models, chair):
    extractor = create_extractor("dino", model=tiny_models["dino_model"], input_size=56, **FAST)

    def cancel_after_first_batch(fraction, message):
        if 0 < fraction < 1:
            raise Cancelled()

    with pytest.raises(Cancelled):
        extractor.extract(chair, progress=cancel_after_first_batch)
    assert extractor.extract(chair).shape == (chair.n_vertices, DINO_DIM)


def test_prompt_from_mesh_name():
    assert prompt_from_name("GreenChair_01_1k") == "green chair"
    assert prompt_from_name("horse_statue_01_1k") == "horse statue"
    assert prompt_from_name("0001") == "object"


def test_a_folder_with_config_but_no_weights_is_missing(tmp_path, chair):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "dinov2", "hidden_size": 8}))
    with pytest.raises(MissingWeightsError, match=str(tmp_path)):
        create_extractor("dino", model=str(tmp_path), **FAST).extract(chair)


def test_cancel_during_denoising_removes_the_unet_hook(tiny_models, chair):
    extractor = diff3f(tiny_models)
    messages = []

    def cancel_at_second_step(fraction, message):
        messages.append(message)
        if "denoising step 2" in message:
            raise Cancelled()

    with pytest.raises(Cancelled):
        extractor.extract(chair, progress=cancel_at_second_step)
    assert "diff3f: denoising step 1 of 3" in messages
    assert not extractor.pipe.unet.up_blocks[1]._forward_hooks
    assert extractor.extract(chair).shape == (chair.n_vertices, UNET_STAGE_DIM + DINO_DIM)


@pytest.mark.heavy
def test_real_dinov2_sees_left_and_right_alike(data_dir):
    """With real DINOv2 weights (cached locally; skipped otherwise), a vertex and its mirror image on
    a symmetric statue get similar features: the semantics sa3df then learns to tell apart."""
    from sa3df.features.extractors.weights import weights_present

    model = os.environ.get("SA3DF_DINO_MODEL", "facebook/dinov2-small")
    if not weights_present(model):
        pytest.skip(f"DINOv2 weights '{model}' are not available offline")
    from scipy.spatial import cKDTree

    horse = meshes.load(data_dir / "meshes/polyhaven/horse_statue_01_1k.obj")
    features = create_extractor("dino", model=model, device="cpu", views=24).extract(horse)
    frame = horse.normalized().vertices
    best = None
    for axis in range(3):  # the mirror plane is the one that maps the statue onto itself best
        mirrored = frame * np.where(np.arange(3) == axis, -1, 1)
        distance, partner = cKDTree(frame).query(mirrored)
        if best is None or distance.mean() < best[0]:
            best = (distance.mean(), partner)
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    mirror_similarity = (unit * unit[best[1]]).sum(1).mean()
    shuffled = unit[np.random.default_rng(0).permutation(len(unit))]
    assert mirror_similarity > (unit * shuffled).sum(1).mean() + 0.2


def test_weights_dir_holds_model_folders_by_hub_id(tiny_models, tmp_path, chair):
    import shutil

    weights = tmp_path / "weights"
    shutil.copytree(tiny_models["dino_model"], weights / "facebook" / "dinov2-base")
    options = dict(FAST, input_size=56, weights_dir=str(weights))
    assert choose_extractor("auto", allow_downloads=False, **options).name == "dino"  # the default id, found there
    features = create_extractor("dino", **options).extract(chair)
    reference = create_extractor("dino", model=tiny_models["dino_model"], **dict(FAST, input_size=56)).extract(chair)
    np.testing.assert_array_equal(features, reference)
