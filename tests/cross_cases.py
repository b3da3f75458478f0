"""Cross-character evaluation cases from the shared CC0 characters (tests and bench/bench_cross.py).

A case is a source character at rest and a target character at rest or posed (a frame of its own
animation), with a ground truth that needs no shared connectivity: canonical **body regions** per vertex,
from each vertex's dominant deform bone through a hand-written bone-name -> region map per rig (below;
the methods never see bone names). Frame-to-frame cases (one character, rest -> a frame) also carry the
index ground truth and its left/right mirror.

Characters are exported through bpy once; the arrays are cached as npz in ``$SA3DF_CROSS_CACHE`` (default:
the temp folder), keyed by the file's content, the export version and the chosen frame, so later loads
need neither bpy nor the import time.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sa3df.core.mesh import Mesh, from_arrays
from sa3df.core.orient import rotation_about

EXPORT_VERSION = 2  # bump when the exported arrays change meaning
SIDES = ("L", "R")
HUMANOID_REGIONS = ["head", "neck", "chest", "pelvis"] + [
    f"{part}.{side}" for part in ("upper_arm", "forearm", "hand", "thigh", "shin", "foot") for side in SIDES]
QUADRUPED_REGIONS = ["head", "neck", "body", "tail"] + [
    f"{leg}_{part}.{side}" for leg in ("front", "back") for part in ("upper_leg", "lower_leg", "foot")
    for side in SIDES]

# Per rig: (regular expression matched in full against the bone name without its side tokens, region).
# Side tokens: '.L'/'.R' suffixes, 'Left'/'Right' anywhere; also Khronos' 'b_' prefix and '_NN' suffix.
QUATERNIUS_HUMAN = [
    (r"Head", "head"), (r"Neck", "neck"), (r"Body|Hips", "pelvis"), (r"Abdomen|Torso|Shoulder", "chest"),
    (r"UpperArm", "upper_arm"), (r"LowerArm", "forearm"), (r"Palm|MiddleHand|Fingers|Thumb\d", "hand"),
    (r"UpperLeg", "thigh"), (r"LowerLeg", "shin"), (r"Foot", "foot")]
MIXAMO_HUMAN = [
    (r"Head", "head"), (r"Neck", "neck"), (r"Hips", "pelvis"), (r"Spine\d?|Shoulder", "chest"),
    (r"Arm", "upper_arm"), (r"ForeArm", "forearm"), (r"Hand(Thumb|Index|Middle|Ring|Pinky)?\d?", "hand"),
    (r"UpLeg", "thigh"), (r"Leg", "shin"), (r"Foot|ToeBase", "foot")]
QUATERNIUS_FARM = [
    (r"Head", "head"), (r"Neck", "neck"), (r"Body|Back|Hips|Torso|Shoulders", "body"), (r"Tail\d", "tail"),
    (r"FrontLeg|FrontUpLeg", "front_upper_leg"), (r"FrontLowLeg", "front_lower_leg"),
    (r"FrontFoot", "front_foot"), (r"BackLeg|BackUpLeg", "back_upper_leg"),
    (r"BackLowLeg", "back_lower_leg"), (r"BackFoot", "back_foot")]
QUATERNIUS_ANIMAL = [
    (r"Head|Ear\d", "head"), (r"Neck\d", "neck"), (r"Back|Torso\d?", "body"), (r"Tail\d", "tail"),
    (r"FrontShoulder|FrontUpperLeg", "front_upper_leg"), (r"FrontLowerLeg", "front_lower_leg"),
    (r"IKFrontLeg|FF", "front_foot"), (r"BackShoulder|BackLeg|BackUpperLeg", "back_upper_leg"),
    (r"BackLowerLeg", "back_lower_leg"), (r"IKBackLeg|FFB", "back_foot")]
KHRONOS_FOX = [
    (r"Head", "head"), (r"Neck", "neck"), (r"Hip|Spine\d+", "body"), (r"Tail\d+", "tail"),
    (r"UpperArm", "front_upper_leg"), (r"ForeArm", "front_lower_leg"), (r"Hand", "front_foot"),
    (r"Leg0[12]", "back_upper_leg"), (r"Foot01", "back_lower_leg"), (r"Foot02", "back_foot")]


@dataclass(frozen=True)
class CharacterSpec:
    path: str  # under the shared data folder
    regions: list
    rules: list
    action: str  # the posed frame comes from this action (its name after the last '|')
    frame_fraction: float = 0.3


CHARACTERS = {
    "man": CharacterSpec("humanoids/quaternius_male_casual.fbx", HUMANOID_REGIONS, QUATERNIUS_HUMAN, "Man_Walk"),
    "woman": CharacterSpec("humanoids/quaternius_female_casual.fbx", HUMANOID_REGIONS, QUATERNIUS_HUMAN,
                           "Female_Run"),
    "animated_human": CharacterSpec("humanoids/quaternius_animated_human.fbx", HUMANOID_REGIONS, MIXAMO_HUMAN,
                                    "Walk"),
    "horse": CharacterSpec("quadrupeds/quaternius_horse.fbx", QUADRUPED_REGIONS, QUATERNIUS_FARM, "Walk"),
    "cow": CharacterSpec("quadrupeds/quaternius_cow.fbx", QUADRUPED_REGIONS, QUATERNIUS_FARM, "Walk"),
    "fox": CharacterSpec("quadrupeds/quaternius_fox.glb", QUADRUPED_REGIONS, QUATERNIUS_ANIMAL, "Gallop"),
    "wolf": CharacterSpec("quadrupeds/quaternius_wolf.glb", QUADRUPED_REGIONS, QUATERNIUS_ANIMAL, "Gallop"),
    "khronos_fox": CharacterSpec("quadrupeds/khronos_fox.glb", QUADRUPED_REGIONS, KHRONOS_FOX, "Run"),
}
CROSS_PAIRS = ["man->animated_human", "man->woman", "woman->animated_human", "horse->cow", "fox->wolf",
               "khronos_fox->fox", "fox->khronos_fox"]
FRAME_PAIRS = ["man->man", "horse->horse"]  # rest -> a frame of its own animation; index ground truth
PAIRS = CROSS_PAIRS + FRAME_PAIRS
FAST_PAIRS = ["man->animated_human", "horse->cow"]  # small meshes: for tests
# The cross pairs the other way round (the two fox pairs are both ways already): bench_cross.py --reversed.
# Among them the man walking as the target, his feet nearly in line.
REVERSED_PAIRS = ["->".join(p.split("->")[::-1]) for p in CROSS_PAIRS if "khronos_fox" not in p]


def mirror_table(names: list[str]) -> np.ndarray:
    """(R,) int: the region on the other side of each region (itself for a central one)."""
    swap = {"L": "R", "R": "L"}
    index = {n: i for i, n in enumerate(names)}
    return np.array([index[re.sub(r"\.(L|R)$", lambda m: "." + swap[m[1]], n)] for n in names])


def bone_region(bone: str, spec: CharacterSpec) -> str:
    """Canonical region of a deform bone by the rig's rules; raises on a bone no rule names."""
    bare = re.sub(r"^b_|_\d+$", "", bone)
    side = "L" if re.search(r"\.L$|Left", bare) else "R" if re.search(r"\.R$|Right", bare) else None
    bare = re.sub(r"\.(L|R)$|Left|Right", "", bare)
    for pattern, region in spec.rules:
        if re.fullmatch(pattern, bare):
            name = f"{region}.{side}" if side and region not in spec.regions else region  # a clavicle is chest
            if name not in spec.regions:
                raise ValueError(f"bone '{bone}' maps to '{name}', not a region of {spec.path}")
            return name
    raise ValueError(f"no region rule for bone '{bone}' of {spec.path}")


@dataclass
class CrossCase:
    """A source character at rest and a target at rest or posed, as sa3df meshes (welded as the CLI and
    add-on weld). ``source_regions`` (Ns,) / ``target_regions`` (Nt,) index ``region_names`` (-1: no
    deform weight); ``mirror`` (R,) is :func:`mirror_table`. Frame-to-frame cases also give ``truth``
    (Nt,) the true source vertex of each target vertex and ``truth_mirror`` (Nt,) its left/right mirror.
    ``source_weights`` (Ns, R) / ``target_weights`` (Nt, R) are the skin weights per region
    (:func:`character_region_weights`; for :func:`sa3df.apps.evaluate.blend_scores`). ``target_facing``
    (3, 3) turns the target about Z to face like the source, chosen with the ground truth
    (:func:`facing_from_regions`), for the baselines: :func:`sa3df.core.orient.yaw_to_match` is fooled by
    posed targets (the running woman comes out turned 157.5°, the walking animated human, whose Walk turns
    it from +X to -Y, 0° instead of 90°), and a baseline should not lose for that. A method finds its own."""

    pair: str
    posed: bool
    source: Mesh
    target: Mesh
    source_regions: np.ndarray
    target_regions: np.ndarray
    region_names: list
    mirror: np.ndarray
    source_weights: np.ndarray = None
    target_weights: np.ndarray = None
    target_facing: np.ndarray = None
    truth: np.ndarray | None = None
    truth_mirror: np.ndarray | None = None

    @property
    def label(self) -> str:
        return f"{self.pair} {'posed' if self.posed else 'rest'}"


def data_dir() -> Path:
    from conftest import find_data_dir

    found = find_data_dir()
    if found is None:
        raise FileNotFoundError("shared data not found: set SA3DF_DATA or place it at ../shared/data")
    return found


def cache_dir() -> Path:
    return Path(os.environ.get("SA3DF_CROSS_CACHE") or Path(tempfile.gettempdir()) / "sa3df-cross-cases")


def _cache_path(name: str, spec: CharacterSpec, source: Path) -> Path:
    h = hashlib.sha256(source.read_bytes())
    h.update(f"{EXPORT_VERSION}|{spec.action}|{spec.frame_fraction}".encode())
    return cache_dir() / f"{name}_{h.hexdigest()[:16]}.npz"


def _export(spec: CharacterSpec, source: Path) -> dict:
    """Through bpy: the largest skinned mesh's rest vertices (world), triangles, dominant deform bone per
    vertex, skin weights (vertices × bones), and its world vertices at the chosen frame of ``spec.action``."""
    import bpy

    from blender_scene import import_character
    from sa3df_addon import rig_io

    armature, _ = import_character(source)
    body = max(rig_io.moved_meshes(armature), key=lambda o: len(o.data.vertices))  # not a helper mesh
    rig = rig_io.rig_from_objects(armature, [body])
    world = np.array(armature.matrix_world, dtype=np.float64)
    # '...|Walk' (Blender 5.0) or '...|Walk_AnimalArmature' (4.2's glTF importer adds the armature's name)
    action = next(a for a in bpy.data.actions if re.fullmatch(rf"{spec.action}(_[A-Za-z0-9]+)?", a.name.split("|")[-1]))
    armature.animation_data_create()
    armature.animation_data.action = action
    if hasattr(armature.animation_data, "action_slot") and action.slots:
        armature.animation_data.action_slot = action.slots[0]
    frames = rig_io.action_frames(action)
    frame = frames[int(spec.frame_fraction * (len(frames) - 1))]
    bone = rig.weights.argmax(axis=1)
    bone[rig.weights.max(axis=1) <= 0] = -1
    return dict(rest=rig.rest_vertices @ world[:3, :3].T + world[:3, 3], faces=rig.faces, bone=bone,
                weights=rig.weights.astype(np.float32), bone_names=np.array(rig.bone_names),
                posed=rig_io.source_clip(armature, [body], [frame])[0], frame=frame)


@functools.lru_cache(maxsize=None)
def character_arrays(name: str) -> dict:
    """The exported arrays of one character (see :func:`_export`), from the npz cache when present."""
    spec = CHARACTERS[name]
    source = data_dir() / spec.path
    path = _cache_path(name, spec, source)
    if path.exists():
        with np.load(path, allow_pickle=False) as stored:
            return {k: stored[k] for k in stored.files}
    arrays = _export(spec, source)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)
    return arrays


@functools.lru_cache(maxsize=None)
def character_regions(name: str) -> np.ndarray:
    """(N_input,) region id of every exported vertex (-1 where it has no deform weight)."""
    spec, arrays = CHARACTERS[name], character_arrays(name)
    per_bone = np.array([spec.regions.index(bone_region(str(b), spec)) if (arrays["bone"] == i).any() else -1
                         for i, b in enumerate(arrays["bone_names"])] + [-1])
    return per_bone[arrays["bone"]]  # bone -1 picks the trailing -1


@functools.lru_cache(maxsize=None)
def character_region_weights(name: str) -> np.ndarray:
    """(N_input, R) float32: every exported vertex's skin weight per region (its bones' weights summed by
    :func:`bone_region`), rows summing to 1 (all zero where unweighted)."""
    spec, arrays = CHARACTERS[name], character_arrays(name)
    weights = np.zeros((len(arrays["weights"]), len(spec.regions)), np.float32)
    for b, bone in enumerate(arrays["bone_names"]):
        if arrays["weights"][:, b].any():
            weights[:, spec.regions.index(bone_region(str(bone), spec))] += arrays["weights"][:, b]
    return weights / np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)


def character_mesh(name: str, posed: bool) -> Mesh:
    """The character welded as the CLI welds (coincident vertices merged); posed, it keeps the rest
    pose's welding so its vertex ids are the rest mesh's."""
    arrays = character_arrays(name)
    rest = from_arrays(arrays["rest"], arrays["faces"], name=name)
    if not posed:
        return rest
    return Mesh(arrays["posed"][rest.input_index], rest.faces, rest.input_index, rest.input_vertex_count,
                f"{name} {CHARACTERS[name].action}", input_to_clean=rest.input_to_clean)


def facing_from_regions(case: CrossCase, turns: int = 16) -> np.ndarray:
    """(3, 3) the turn about Z (of ``turns`` evenly spaced) under which the box-normalised nearest vertex
    scores the best region accuracy: the target then faces like the source (ground truth; for baselines).
    A centroid axis is not enough: a galloping animal's left legs are ahead of its right ones."""
    from scipy.spatial import cKDTree

    from sa3df.apps.evaluate import region_scores
    from sa3df.core.orient import box_normalized

    tree = cKDTree(box_normalized(case.source.vertices))

    def accuracy(rotation):
        t2s = tree.query(box_normalized(case.target.vertices @ rotation.T))[1]
        return region_scores(t2s, case.source_regions, case.target_regions, case.mirror)["accuracy"]

    rotations = [rotation_about(2, 2 * np.pi * k / turns) for k in range(turns)]
    return max(rotations, key=accuracy)


def load_case(pair: str, posed: bool) -> CrossCase:
    """The case ``pair`` ("source->target": two of :data:`CHARACTERS`, e.g. one of :data:`PAIRS`), the
    target posed or at rest."""
    source_name, _, target_name = pair.partition("->")
    if source_name not in CHARACTERS or target_name not in CHARACTERS:
        raise ValueError(f"pair '{pair}' is not 'source->target' of {', '.join(CHARACTERS)}")
    regions = CHARACTERS[source_name].regions
    if CHARACTERS[target_name].regions is not regions:
        raise ValueError(f"pair '{pair}' mixes a humanoid and a quadruped")
    source, target = character_mesh(source_name, False), character_mesh(target_name, posed)
    case = CrossCase(pair, posed, source, target, character_regions(source_name)[source.input_index],
                     character_regions(target_name)[target.input_index], list(regions), mirror_table(regions),
                     character_region_weights(source_name)[source.input_index],
                     character_region_weights(target_name)[target.input_index], np.eye(3))
    case.target_facing = facing_from_regions(case)
    if source_name == target_name:
        from sa3df.apps.evaluate import mirrored_ground_truth

        case.truth = np.arange(target.n_vertices)
        case.truth_mirror = mirrored_ground_truth(source.vertices, source.faces)
    return case


# Baseline methods: fn(case) -> target_to_source (Nt,), or (target_to_source, (source_features,
# target_features)) when the method has per-vertex features that parts can be clustered from.

def position_only(case: CrossCase) -> np.ndarray:
    """Nearest source vertex in the box-normalised shapes, the target first turned about Z to face like
    the source (``case.target_facing``): the trivial baseline every method must beat."""
    from scipy.spatial import cKDTree

    from sa3df.core.orient import box_normalized

    turned = case.target.vertices @ case.target_facing.T
    return cKDTree(box_normalized(case.source.vertices)).query(box_normalized(turned))[1].astype(np.int64)


def base_features(case: CrossCase):
    """`sa3df match --base`: cosine nearest neighbour of the geometric base features."""
    from sa3df.apps.match import correspondence
    from sa3df.features.extractors import create_extractor

    extractor = create_extractor("geometric")
    features = extractor.extract(case.source), extractor.extract(case.target)
    return correspondence(*features).target_to_source, features


def surface_aware(case: CrossCase, steps: int = 600):
    """Today's CLI default `sa3df match source target`: geometric base features, 600 test-time training
    steps on the two meshes (seed 0), cosine nearest neighbour of the embeddings, no rest prior."""
    from sa3df.apps.match import correspondence
    from sa3df.features.pipeline import compute_surface_features
    from sa3df.features.settings import FeatureSettings

    result = compute_surface_features([case.source, case.target],
                                      FeatureSettings(extractor="geometric", steps=steps, seed=0, device="cpu",
                                                      training={"cpu_threads": 1}))  # repeatable: cross_methods
    features = tuple(f.embedding for f in result.features)
    return correspondence(*features).target_to_source, features


BASELINES = {"position-only": position_only, "base": base_features, "surface-aware": surface_aware}


def method_output(result) -> tuple[np.ndarray, tuple | None]:
    """(target_to_source, features or None) from a method's return value."""
    if isinstance(result, tuple):
        return np.asarray(result[0]), result[1]
    return np.asarray(result), None
