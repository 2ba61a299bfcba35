"""Bandai-Namco Research motion dataset -> H36M-17 pose cache (metres, Z-up world), with a fixed split.

The data (CC BY-NC 4.0, non-commercial) is never shipped with this repository: ``lbi data prepare-mocap
--src DIR --out DIR`` reads it from ``--src`` and writes a cache outside the tree.

Sources found recursively under ``--src``:

* dataset-1 style: ``dataset-1_<content>_<style>_<take>.bvh`` with a sibling ``.json``
  (``{"content": i, "style": j}``);
* dataset-2 style: ``*.tar.xz`` / ``*.tar`` archives holding the same flat ``.bvh`` + ``.json`` pairs.

Labels come from the file name and are cross-checked against the JSON ids and the dataset's
``cfg/{content,style}_label.txt`` when those are found; a disagreement rejects the clip (malformed data).

Skeleton mapping (the rig is 21 joints; BVH in centimetres, Y up). H36M joint <- Bandai joint:

==========  =======================================================================================
pelvis      midpoint of UpperLeg_L and UpperLeg_R (the hip joint centres), as the COCO rule does
r/l_hip     UpperLeg_R / UpperLeg_L
r/l_knee    LowerLeg_R / LowerLeg_L
r/l_ankle   Foot_R / Foot_L
spine       Spine
thorax      midpoint of UpperArm_L and UpperArm_R (the shoulder joints), as the COCO rule does
neck_nose   Head joint + 3 cm up + 7 cm forward in the Head joint's frame (nose height, face front)
head        Head joint + 14 cm up + 2 cm forward in the Head frame (top of the head, H36M's marker)
shoulders   UpperArm_*; elbows LowerArm_*; wrists Hand_*
==========  =======================================================================================

The Head frame's axes were read off the data: local +x points up along the neck, +y forward (out of the
face), +z to the person's left. The rig has no face/head-top joints, so these two offsets are documented
approximations (nose about 3-4 cm above the skull-base pivot; head marker about 5 cm below the vertex).
Extra points for the renderer: ``toes`` (F, 2, 3) = Toes_L, Toes_R (ball of the foot).

World convention of the cache: metres, right-handed, **Z up**, floor at z = 0 (the mocap floor),
``(x, y, z)_world = (x, -z, y)_bvh / 100``.

Split (fixed, by style: whole styles are held out so val/test motions are stylistically unseen):

* val:  dataset-1 styles ``childish``, ``happy``; dataset-2 style ``youthful``
* test: dataset-1 styles ``old``, ``tired``; dataset-2 style ``elderly``
* train: every other *known* style and content (listed in ``KNOWN_STYLES`` / ``KNOWN_CONTENTS``)
* any clip whose style or content is not known to this split goes to **test** (never silently to train).
"""

from __future__ import annotations

import json
import logging
import re
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from lbi_ros.mocap.bvh import BVHError, BVHMotion, forward_kinematics, parse_bvh
from lbi_ros.mocap.cache import (
    CACHE_ARRAYS,
    CACHE_INDEX,
    CACHE_VERSION,
    SPLITS,
    ClipRecord,
    MocapError,
)
from lbi_ros.skeleton import NUM_JOINTS

log = logging.getLogger(__name__)

Split = Literal["train", "val", "test"]

KNOWN_STYLES: dict[str, frozenset[str]] = {
    "dataset-1": frozenset(
        "normal happy sad angry proud not-confident masculinity feminine childish old tired active musical "
        "giant chimpira".split()
    ),
    "dataset-2": frozenset("active elderly exhausted feminine masculine normal youthful".split()),
}
KNOWN_CONTENTS: dict[str, frozenset[str]] = {
    "dataset-1": frozenset(
        "walk run dash walk-back walk-left walk-right bow bye byebye guide respond call punch kick slash "
        "dance-long dance-short".split()
    ),
    "dataset-2": frozenset(
        "walk walk-turn-left walk-turn-right run wave-both-hands wave-left-hand wave-right-hand "
        "raise-up-both-hands raise-up-left-hand raise-up-right-hand".split()
    ),
}
VAL_STYLES: dict[str, frozenset[str]] = {
    "dataset-1": frozenset({"childish", "happy"}),
    "dataset-2": frozenset({"youthful"}),
}
TEST_STYLES: dict[str, frozenset[str]] = {
    "dataset-1": frozenset({"old", "tired"}),
    "dataset-2": frozenset({"elderly"}),
}

# Head-frame offsets (metres, Head local axes: x up, y forward, z left) for the synthesized joints.
NECK_NOSE_OFFSET_M = (0.03, 0.07, 0.0)
HEAD_TOP_OFFSET_M = (0.14, 0.02, 0.0)

_NAME_RE = re.compile(r"^(dataset-\d+)_([a-z\-]+)_([a-z\-]+)_(\d+)$")
_BANDAI_REQUIRED = (
    "Hips", "Spine", "Head", "UpperArm_L", "UpperArm_R", "LowerArm_L", "LowerArm_R", "Hand_L", "Hand_R",
    "UpperLeg_L", "UpperLeg_R", "LowerLeg_L", "LowerLeg_R", "Foot_L", "Foot_R", "Toes_L", "Toes_R",
)  # fmt: skip
# BVH (Y-up, cm) -> world (Z-up, m): x' = x, y' = -z, z' = y.
BVH_TO_WORLD = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]]) / 100.0


@dataclass(frozen=True)
class ClipLabel:
    """Labels parsed from ``dataset-K_<content>_<style>_<take>``."""

    name: str
    dataset: str
    content: str
    style: str
    take: int


def parse_clip_name(stem: str) -> ClipLabel:
    m = _NAME_RE.match(stem)
    if not m:
        raise MocapError(f"clip name {stem!r} does not look like dataset-K_<content>_<style>_<take>")
    return ClipLabel(name=stem, dataset=m[1], content=m[2], style=m[3], take=int(m[4]))


def assign_split(label: ClipLabel) -> Split:
    """The fixed split (module docstring). Unknown dataset/style/content -> test."""
    ds = label.dataset
    if label.style not in KNOWN_STYLES.get(ds, ()) or label.content not in KNOWN_CONTENTS.get(ds, ()):
        return "test"
    if label.style in VAL_STYLES.get(ds, ()):
        return "val"
    if label.style in TEST_STYLES.get(ds, ()):
        return "test"
    return "train"


# ---------------------------------------------------------------------------------------------------------
# Skeleton conversion
# ---------------------------------------------------------------------------------------------------------


def bandai_to_h36m(motion: BVHMotion) -> tuple[np.ndarray, np.ndarray]:
    """FK + mapping: returns (joints (F, 17, 3), toes (F, 2, 3) [left, right]) float32, world metres Z-up."""
    missing = [n for n in _BANDAI_REQUIRED if n not in motion.names]
    if missing:
        raise MocapError(f"BVH lacks Bandai-Namco joints {missing}; has {list(motion.names)}")
    pos, rot = forward_kinematics(motion)  # (F, J, 3) cm, (F, J, 3, 3)
    ix = {n: i for i, n in enumerate(motion.names)}

    def p(name: str) -> np.ndarray:
        return pos[:, ix[name]]

    head_rot = rot[:, ix["Head"]]
    off_nose = np.asarray(NECK_NOSE_OFFSET_M) * 100.0
    off_top = np.asarray(HEAD_TOP_OFFSET_M) * 100.0
    f = pos.shape[0]
    out = np.zeros((f, NUM_JOINTS, 3))
    out[:, 0] = 0.5 * (p("UpperLeg_L") + p("UpperLeg_R"))
    out[:, 1], out[:, 2], out[:, 3] = p("UpperLeg_R"), p("LowerLeg_R"), p("Foot_R")
    out[:, 4], out[:, 5], out[:, 6] = p("UpperLeg_L"), p("LowerLeg_L"), p("Foot_L")
    out[:, 7] = p("Spine")
    out[:, 8] = 0.5 * (p("UpperArm_L") + p("UpperArm_R"))
    out[:, 9] = p("Head") + head_rot @ off_nose
    out[:, 10] = p("Head") + head_rot @ off_top
    out[:, 11], out[:, 12], out[:, 13] = p("UpperArm_L"), p("LowerArm_L"), p("Hand_L")
    out[:, 14], out[:, 15], out[:, 16] = p("UpperArm_R"), p("LowerArm_R"), p("Hand_R")
    toes = np.stack([p("Toes_L"), p("Toes_R")], 1)
    joints = out @ BVH_TO_WORLD.T
    toes = toes @ BVH_TO_WORLD.T
    if not (np.all(np.isfinite(joints)) and np.all(np.isfinite(toes))):
        raise MocapError("forward kinematics produced non-finite positions")
    return joints.astype(np.float32), toes.astype(np.float32)


# ---------------------------------------------------------------------------------------------------------
# Source discovery
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipSource:
    label: ClipLabel
    origin: str  # file path or "archive.tar.xz:member"
    read_bvh_text: Callable[[], str]
    read_json_text: Callable[[], str] | None
    cfg_dir: Path | None


def _find_cfg(start: Path) -> Path | None:
    for parent in (start, *start.parents[:2]):
        if (parent / "cfg" / "content_label.txt").is_file() and (parent / "cfg" / "style_label.txt").is_file():
            return parent / "cfg"
    return None


def _read_labels(cfg: Path, dataset: str) -> tuple[list[str], list[str]]:
    def read(name: str) -> list[str]:
        lines = [ln.strip() for ln in (cfg / name).read_text().splitlines() if ln.strip()]
        prefix = f"{dataset}_"
        return [ln[len(prefix):] if ln.startswith(prefix) else ln for ln in lines]

    return read("content_label.txt"), read("style_label.txt")


def iter_sources(src: str | Path) -> Iterator[ClipSource]:
    """Yield every clip under ``src`` (raw BVH files and .tar/.tar.xz archives), sorted by name."""
    src = Path(src)
    if not src.is_dir():
        raise FileNotFoundError(f"mocap source {src} is not a directory")
    found: dict[str, ClipSource] = {}

    def add(cs: ClipSource) -> None:
        if cs.label.name in found:
            log.warning("duplicate clip %s (%s and %s); keeping the first", cs.label.name,
                        found[cs.label.name].origin, cs.origin)
            return
        found[cs.label.name] = cs

    for bvh in sorted(src.rglob("*.bvh")):
        try:
            label = parse_clip_name(bvh.stem)
        except MocapError as exc:
            log.warning("skipping %s: %s", bvh, exc)
            continue
        js = bvh.with_suffix(".json")
        add(ClipSource(
            label=label, origin=str(bvh),
            read_bvh_text=lambda b=bvh: b.read_text(),
            read_json_text=(lambda j=js: j.read_text()) if js.is_file() else None,
            cfg_dir=_find_cfg(bvh.parent),
        ))
    archives = sorted(set(src.rglob("*.tar.xz")) | set(src.rglob("*.tar")))
    for arc in archives:
        try:
            tf = tarfile.open(arc, "r:*")
        except (tarfile.TarError, OSError) as exc:
            raise MocapError(f"{arc}: cannot open archive ({exc})") from exc
        with tf:
            members = {m.name: m for m in tf.getmembers() if m.isfile()}
            texts: dict[str, bytes] = {}
            for name in sorted(members):
                if name.endswith((".bvh", ".json")):
                    fobj = tf.extractfile(members[name])
                    if fobj is not None:
                        texts[name] = fobj.read()
        cfg = _find_cfg(arc.parent)
        for name in sorted(n for n in texts if n.endswith(".bvh")):
            stem = Path(name).stem
            try:
                label = parse_clip_name(stem)
            except MocapError as exc:
                log.warning("skipping %s:%s: %s", arc, name, exc)
                continue
            jname = name[:-4] + ".json"
            add(ClipSource(
                label=label, origin=f"{arc}:{name}",
                read_bvh_text=lambda t=texts[name]: t.decode("utf-8"),
                read_json_text=(lambda t=texts[jname]: t.decode("utf-8")) if jname in texts else None,
                cfg_dir=cfg,
            ))
        texts = {}
    for name in sorted(found):
        yield found[name]


def check_labels(source: ClipSource) -> None:
    """Cross-check the file-name labels against the JSON ids and cfg label lists, when present."""
    if source.read_json_text is None:
        log.warning("%s: no JSON label file; using the file-name labels", source.origin)
        return
    try:
        data = json.loads(source.read_json_text())
    except json.JSONDecodeError as exc:
        raise MocapError(f"{source.origin}: label JSON is not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or not all(isinstance(data.get(k), int) for k in ("content", "style")):
        raise MocapError(f"{source.origin}: label JSON must be {{'content': int, 'style': int}}, got {data!r}")
    if source.cfg_dir is None:
        return
    contents, styles = _read_labels(source.cfg_dir, source.label.dataset)
    ci, si = data["content"], data["style"]
    if not (0 <= ci < len(contents) and 0 <= si < len(styles)):
        raise MocapError(f"{source.origin}: label ids {data} out of range of {source.cfg_dir}")
    if contents[ci] != source.label.content or styles[si] != source.label.style:
        raise MocapError(
            f"{source.origin}: JSON labels ({contents[ci]}, {styles[si]}) disagree with the file name "
            f"({source.label.content}, {source.label.style})"
        )


# ---------------------------------------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrepareReport:
    clips: dict[str, int]
    frames: dict[str, int]
    skipped: tuple[str, ...]


def prepare_mocap(
    src: str | Path, out: str | Path, progress: bool = False, limit: int | None = None
) -> PrepareReport:
    """Convert every clip under ``src`` to H36M-17 and write ``out/mocap_h36m17.npz`` + ``out/index.json``.

    Malformed clips (bad BVH, disagreeing labels, wrong rig) are skipped with a logged error and listed in
    the report. ``limit`` stops after that many clips (for quick looks).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sources = list(iter_sources(src))
    if limit is not None:
        sources = sources[:limit]
    if not sources:
        raise MocapError(f"no dataset-K_<content>_<style>_<take>.bvh clips found under {src}")
    joints_all, toes_all, records, skipped = [], [], [], []
    start = 0
    iterator = sources
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(sources, desc="clips", unit="clip")
        iterator = bar
    for source in iterator:
        try:
            check_labels(source)
            motion = parse_bvh(source.read_bvh_text(), source=source.origin)
            joints, toes = bandai_to_h36m(motion)
        except (BVHError, MocapError, UnicodeDecodeError) as exc:
            log.error("skipping %s: %s", source.origin, exc)
            skipped.append(source.origin)
            continue
        if joints.shape[0] == 0:
            log.warning("skipping %s: no frames", source.origin)
            skipped.append(source.origin)
            continue
        lab = source.label
        records.append(ClipRecord(
            name=lab.name, dataset=lab.dataset, content=lab.content, style=lab.style, take=lab.take,
            split=assign_split(lab), start=start, frames=int(joints.shape[0]), fps=round(motion.fps, 3),
        ))
        joints_all.append(joints)
        toes_all.append(toes)
        start += joints.shape[0]
    if bar is not None:
        bar.close()
    if not records:
        raise MocapError(f"no usable clips under {src} ({len(skipped)} skipped)")
    np.savez(out / CACHE_ARRAYS, joints=np.concatenate(joints_all), toes=np.concatenate(toes_all))
    clips = {s: sum(r.split == s for r in records) for s in SPLITS}
    frames = {s: sum(r.frames for r in records if r.split == s) for s in SPLITS}
    index = {
        "version": CACHE_VERSION,
        "joint_set": "h36m17",
        "extra_points": ["l_toe", "r_toe"],
        "units": "metres",
        "world": "right-handed, Z up, floor z=0; (x, y, z) = (x, -z, y)_bvh / 100",
        "source": "Bandai-Namco-Research-Motiondataset (CC BY-NC 4.0, non-commercial use only)",
        "split_rule": {
            "val_styles": {k: sorted(v) for k, v in VAL_STYLES.items()},
            "test_styles": {k: sorted(v) for k, v in TEST_STYLES.items()},
            "unknown_labels": "test",
        },
        "summary": {"clips": clips, "frames": frames},
        "clips": [asdict(r) for r in records],
    }
    (out / CACHE_INDEX).write_text(json.dumps(index, indent=1))
    return PrepareReport(clips=clips, frames=frames, skipped=tuple(skipped))
