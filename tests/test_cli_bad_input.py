"""What a user gets from the command line for bad input: one clear line (exit 2) before any work,
never a traceback; and output files with one row per *input* vertex."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import trimesh

from sa3df.cli import main


def run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(err: str, command: str) -> str:
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if not line.startswith("base features:")]
    assert len(lines) == 1 and lines[0].startswith(f"sa3df {command}: error: "), err
    return lines[0]


def write_obj(path, vertices, faces):
    lines = [f"v {x} {y} {z}" for x, y, z in vertices] + [f"f {a} {b} {c}" for a, b, c in np.asarray(faces) + 1]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def ball(tmp_path):
    sphere = trimesh.creation.icosphere(subdivisions=1)
    return write_obj(tmp_path / "ball.obj", sphere.vertices, sphere.faces)


def test_inputs_with_the_same_stem_are_refused_before_any_work(tmp_path, capsys, ball):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    a, b = (tmp_path / d / "body.obj" for d in "ab")
    a.write_text(ball.read_text()), b.write_text(ball.read_text())
    for command in ("features", "segment"):
        code, _, err = run(capsys, command, a, b, "--out", tmp_path / "o", "--cache", tmp_path / "c")
        line = one_error_line(err, command)
        assert code == 2 and f"Inputs '{a}' and '{b}' would both write 'body' outputs" in line
    assert not (tmp_path / "o").exists() and not (tmp_path / "c").exists(), "nothing was computed or written"


def test_out_naming_a_file_is_refused(tmp_path, capsys, ball):
    (tmp_path / "taken").write_text("the user's file")
    code, _, err = run(capsys, "features", ball, "--out", tmp_path / "taken")
    assert code == 2 and "is a file; give a folder" in one_error_line(err, "features")
    assert (tmp_path / "taken").read_text() == "the user's file"


def test_meshes_that_cannot_be_computed_get_one_line_naming_them(tmp_path, capsys):
    cases = {
        "tri.obj": ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "Mesh 'tri' is too small: 3 vertices and 1 face(s)"),
        "token.obj": ("v 0 0 0\nv 1 0 0\nv 0 1 0\n\nf 1 2 x\n", "'token.obj' line 5: face record has 'x'"),
        "huge.obj": ("v 0 0 0\nv 1e300 0 0\nv 0 1e300 0\nv 0 0 1e300\nf 1 2 3\nf 1 3 4\nf 1 2 4\nf 2 3 4\n",
                     "Mesh 'huge': coordinates reach 1e+300"),
        "short.obj": ("v 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "'short.obj' line 1: a vertex needs three coordinates"),
    }
    for name, (text, expected) in cases.items():
        (tmp_path / name).write_text(text)
        code, _, err = run(capsys, "features", tmp_path / name, "--out", tmp_path / "o", "--steps", "5",
                           "--cache", tmp_path / "c")
        assert code == 2 and expected in one_error_line(err, "features"), name


def _checkpoint_folder(tmp_path, capsys, ball):
    """A real checkpoint of geometric features, trained for a few steps."""
    code, _, err = run(capsys, "train", ball, "--out", tmp_path / "net", "--steps", "3", "--cache", tmp_path / "c")
    assert code == 0, err
    return tmp_path / "net"


def test_damaged_checkpoints_are_named_not_used(tmp_path, capsys, ball):
    from safetensors.torch import load_file, save_file

    good = _checkpoint_folder(tmp_path, capsys, ball)
    weights = good / "model.safetensors"

    def embed_with(folder):
        return run(capsys, "features", ball, "--out", tmp_path / "o", "--steps", "0", "--checkpoint", folder,
                   "--cache", tmp_path / "c")

    damaged = {}
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    (truncated / "config.json").write_text((good / "config.json").read_text())
    (truncated / "model.safetensors").write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    damaged[truncated] = "is damaged or not a safetensors file"

    nan = tmp_path / "nan"
    nan.mkdir()
    (nan / "config.json").write_text((good / "config.json").read_text())
    tensors = load_file(str(weights))
    first = sorted(tensors)[0]
    tensors[first] = torch.full_like(tensors[first], float("nan"))
    save_file(tensors, str(nan / "model.safetensors"))
    damaged[nan] = f"weights {first} hold NaN or infinite values"

    no_network = tmp_path / "no_network"
    no_network.mkdir()
    config = json.loads((good / "config.json").read_text())
    del config["network"]
    (no_network / "config.json").write_text(json.dumps(config))
    (no_network / "model.safetensors").write_bytes(weights.read_bytes())
    damaged[no_network] = "config.json has no 'network' section"

    for folder, expected in damaged.items():
        code, _, err = embed_with(folder)
        assert code == 2 and expected in one_error_line(err, "features"), folder.name
    assert not (tmp_path / "o" / "ball.npz").exists(), "no all-NaN archive is written"
    code, _, err = embed_with(good)
    assert code == 0, err
    embedding = np.load(tmp_path / "o" / "ball.npz")["embedding"]
    assert np.isfinite(embedding).all() and np.allclose(np.linalg.norm(embedding, axis=1), 1, atol=1e-4)


def test_the_reference_feature_network_pt_loads_through_checkpoint(tmp_path, capsys, ball):
    from test_train_network import _RefEMA, _RefFeatureNetwork

    torch.manual_seed(0)
    wrapper = _RefEMA(_RefFeatureNetwork(54), _RefFeatureNetwork(54))  # 54 = geometric feature width
    path = tmp_path / "feature_network.pt"
    torch.save({"model_state_dict": wrapper.state_dict(), "iter": 10}, path)
    code, out, err = run(capsys, "features", ball, "--out", tmp_path / "o", "--steps", "0", "--checkpoint", path,
                         "--cache", tmp_path / "c")
    assert code == 0, err
    assert "embedding 6-d" in out  # 54 -> 27 -> 13 -> 6, the reference's halving widths
    path.write_bytes(path.read_bytes()[:100])
    code, _, err = run(capsys, "features", ball, "--out", tmp_path / "o", "--steps", "0", "--checkpoint", path)
    assert code == 2 and "cannot be read safely" in one_error_line(err, "features")


def test_allowed_downloads_without_a_network_fail_at_once_with_a_hint(tmp_path, capsys, ball, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # nothing cached
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    code, _, err = run(capsys, "features", ball, "--out", tmp_path / "o", "--extractor", "dino",
                       "--allow-downloads", "--cache", tmp_path / "c")
    line = one_error_line(err, "features")
    assert code == 2 and "http://127.0.0.1:9 cannot be reached" in line and "hf download" in line


def test_a_glb_with_seams_prints_its_cleaning_note(data_dir, tmp_path, capsys):
    code, _, err = run(capsys, "features", data_dir / "quadrupeds" / "khronos_fox.glb", "--out", tmp_path / "o",
                       "--steps", "0")
    assert code == 2  # --steps 0 without a checkpoint: refused after loading, so only the note is shown
    assert "khronos_fox: cleaned: 1438 welded vertices" in err.splitlines()


def _ball_with_a_seam_and_a_bad_vertex(path):
    """An icosphere whose vertex 0 is split in two (a seam) plus one NaN vertex nothing uses."""
    sphere = trimesh.creation.icosphere(subdivisions=2)
    vertices = np.vstack([sphere.vertices, sphere.vertices[:1], [[np.nan, np.nan, np.nan]]])
    faces = sphere.faces.copy()
    uses_zero = np.flatnonzero((faces == 0).any(axis=1))[:2]
    faces[uses_zero] = np.where(faces[uses_zero] == 0, len(sphere.vertices), faces[uses_zero])
    return write_obj(path, vertices, faces), len(sphere.vertices)


def test_output_files_have_one_row_per_input_vertex(tmp_path, capsys):
    target, seam = _ball_with_a_seam_and_a_bad_vertex(tmp_path / "target.obj")
    sphere = trimesh.creation.icosphere(subdivisions=2)
    source = write_obj(tmp_path / "source.obj", sphere.vertices * 2, sphere.faces)
    options = ["--steps", "10", "--cache", tmp_path / "c"]
    code, _, err = run(capsys, "match", source, target, "--out", tmp_path / "m", *options)
    assert code == 0, err
    matched = np.loadtxt(tmp_path / "m" / "target_to_source.txt", dtype=int)
    assert len(matched) == seam + 2, "one row per vertex of the target file"
    assert matched[seam] == matched[0], "a welded copy gets its representative's match"
    assert matched[seam + 1] == -1, "a dropped vertex gets -1"
    assert (matched[:seam] >= 0).all() and matched.max() < len(sphere.vertices)

    code, _, err = run(capsys, "segment", source, target, "-k", "3", "--out", tmp_path / "s", *options)
    assert code == 0, err
    labels = np.loadtxt(tmp_path / "s" / "target_labels.txt", dtype=int)
    assert len(labels) == seam + 2 and labels[seam] == labels[0] and labels[seam + 1] == -1


def test_cache_info_and_clear(tmp_path, capsys, ball):
    code, _, err = run(capsys, "features", ball, "--out", tmp_path / "o", "--steps", "3", "--cache", tmp_path / "c")
    assert code == 0, err
    (tmp_path / "c" / "mine.txt").write_text("not a cache entry")
    code, out, _ = run(capsys, "cache", "info", "--cache", tmp_path / "c")
    assert code == 0 and "features: 1 file(s)" in out and "anchors: 1 file(s)" in out
    code, out, _ = run(capsys, "cache", "clear", "--cache", tmp_path / "c")
    assert code == 0 and out.startswith("removed 2 cache file(s)")
    assert (tmp_path / "c" / "mine.txt").exists(), "clear removes only cache entries"
    code, out, _ = run(capsys, "cache", "info", "--cache", tmp_path / "c")
    assert "features: 0 file(s)" in out
