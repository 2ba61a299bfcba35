"""The clothes and hair library: which MakeHuman assets there are, the held-out split, outfits.

Layout of a root (the vendored subset `VENDORED_ROOT`, or the full set passed on the command
line, e.g. ``<bodies>/makehuman``)::

    <root>/clothes/<item>/<name>.mhclo (+ .obj, .mhmat)   suits, shoes, hats
    <root>/hair/<item>/<name>.mhclo    (+ .obj, .mhmat)

Each ``.mhclo`` is one garment named by its file stem (``fedora01/`` holds ``fedora`` and
``fedora_cocked``). Garments are parsed lazily, once per process (`garments.load_garment` is
cached); listing reads only the header tags.

Held out of training (`HELD_OUT`, for the appearance generalisation test): two suits
(``male_casualsuit06``, ``female_sportsuit01``), one pair of shoes (``shoes03``: a mesh of its own;
shoes02/05/06 and 01/04 share meshes and differ only by the texture we do not have) and three hair
styles (``bob02``, ``braid01``, ``short03``). A root that lacks some of them (the vendored subset
has ``female_sportsuit01`` and ``bob02``) just has a smaller held-out split.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from lbi_ros.render.mesh.garments import Garment, kind_of, load_garment, read_tags

VENDORED_ROOT = Path(__file__).resolve().parent / "assets" / "bodies" / "makehuman"
HELD_OUT: frozenset[str] = frozenset(
    {"male_casualsuit06", "female_sportsuit01", "shoes03", "bob02", "braid01", "short03"}
)
P_SHOES = 0.85  # shoes most of the time (barefoot otherwise)
P_HAIR = 0.85  # hair most of the time (bald otherwise)
P_HAT = 0.12  # a hat sometimes, only over short hair or none (long hair pokes through the brim)

Split = Literal["train", "heldout"]
Gender = Literal["male", "female"]


@dataclass(frozen=True, eq=False)
class Outfit:
    """One person's garments: a top-and-bottom suit, optionally shoes, hair, a hat."""

    suit: Garment
    shoes: Garment | None = None
    hair: Garment | None = None
    hat: Garment | None = None

    @property
    def garments(self) -> tuple[Garment, ...]:
        """The garments present, inner first (MakeHuman z_depth; ties keep suit, shoes, hair, hat)."""
        present = [g for g in (self.suit, self.shoes, self.hair, self.hat) if g is not None]
        return tuple(sorted(present, key=lambda g: g.z_depth))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.garments)

    @functools.cached_property
    def delete_verts(self) -> np.ndarray:
        """(D,) int64 sorted union of the body vertices hidden under the outfit."""
        parts = [g.delete_verts for g in self.garments]
        return np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)


def hidden_face_mask(outfit: Outfit, body_faces: np.ndarray) -> np.ndarray:
    """(F,) bool: body triangles whose three vertices are all hidden under the outfit."""
    faces = np.asarray(body_faces)
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"body_faces must be (F, 3), got {faces.shape}")
    hidden = np.zeros(int(faces.max(initial=-1)) + 1, bool)
    dv = outfit.delete_verts
    hidden[dv[dv < hidden.size]] = True
    return hidden[faces].all(axis=1)


def body_faces_kept(outfit: Outfit, body_faces: np.ndarray) -> np.ndarray:
    """The body triangles left to draw: those with a vertex not hidden under the outfit (hidden
    skin costs draw time and pokes through the clothes where the offsets are thin)."""
    faces = np.asarray(body_faces)
    return faces[~hidden_face_mask(outfit, faces)]


def _gender_of(name: str, tags: tuple[str, ...]) -> str | None:
    if "female" in tags or name.startswith("female"):
        return "female"
    if "male" in tags or name.startswith("male"):
        return "male"
    return None


class AssetLibrary:
    """The garments under ``root`` (None: the vendored subset), by kind and split."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else VENDORED_ROOT
        self._paths: dict[str, Path] = {}
        self._kinds: dict[str, str] = {}
        self._tags: dict[str, tuple[str, ...]] = {}
        for sub in ("clothes", "hair"):
            for path in sorted((self.root / sub).glob("*/*.mhclo")):
                name = path.stem
                if name in self._paths:
                    raise ValueError(f"{path}: garment name {name!r} also at {self._paths[name]}")
                self._paths[name] = path
                self._tags[name] = read_tags(path)
                self._kinds[name] = kind_of(path, self._tags[name])
        if not any(k == "clothes" for k in self._kinds.values()):
            raise ValueError(f"{self.root}: no suits (expected <root>/clothes/<item>/<name>.mhclo)")

    def names(self, kind: str | None = None, split: Split | None = None) -> list[str]:
        """Sorted garment names, optionally of one kind ("clothes", "shoes", "hat", "hair") and
        split ("train": not in HELD_OUT, "heldout": in it)."""
        if split not in (None, "train", "heldout"):
            raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
        out = []
        for name, k in self._kinds.items():
            if kind is not None and k != kind:
                continue
            if split is not None and (name in HELD_OUT) != (split == "heldout"):
                continue
            out.append(name)
        return sorted(out)

    def kind(self, name: str) -> str:
        return self._kinds[name]

    def tags(self, name: str) -> tuple[str, ...]:
        return self._tags[name]

    def get(self, name: str) -> Garment:
        """The parsed garment (parsed once per process)."""
        if name not in self._paths:
            raise KeyError(f"no garment {name!r} under {self.root}")
        return load_garment(self._paths[name], kind=self._kinds[name])

    def sample_outfit(
        self, rng: np.random.Generator, split: Split = "train", gender: Gender | None = None
    ) -> Outfit:
        """A random outfit: one suit; shoes with P_SHOES; hair with P_HAIR (else bald); a hat with
        P_HAT when the hair is short or absent. Items come only from ``split``; kinds with no item
        in the split are left out (a split with no suit raises ValueError). ``gender`` prefers
        suits and hair not tagged with the other gender (falling back to all). Deterministic for
        a given generator state."""

        def pick(kind: str, p: float = 1.0) -> Garment | None:
            draw_present, draw_item = rng.random(), rng.random()  # fixed draws per call
            pool = self.names(kind, split)
            if gender is not None and kind in ("clothes", "hair"):
                pool = [n for n in pool if _gender_of(n, self._tags[n]) in (None, gender)] or pool
            if not pool or draw_present >= p:
                return None
            return self.get(pool[min(int(draw_item * len(pool)), len(pool) - 1)])

        suit = pick("clothes")
        if suit is None:
            raise ValueError(f"no {split} suit under {self.root}")
        shoes = pick("shoes", P_SHOES)
        hair = pick("hair", P_HAIR)
        hat = pick("hat", P_HAT) if hair is None or "short" in hair.tags else None
        return Outfit(suit=suit, shoes=shoes, hair=hair, hat=hat)
