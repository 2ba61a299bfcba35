"""Mesh people for synthetic data: an Anny body in MakeHuman clothes and hair, posed by a mocap frame, drawn
with headless OpenGL over the same backgrounds and photometric pipeline as the capsule people.

Why: the image branch learns what it sees. Capsules teach capsule cues; skinned, clothed bodies with widely
randomised shapes, garments, textures, skin tones and lighting are the closest this project can get to real
camera images without real 3D-labelled photos (the domain-randomisation route).

A person has an *identity* (body shape, outfit, textures), built once and kept in a small LRU cache because
building one costs far more than posing it (timings: :mod:`lbi_ros.render.mesh.anny_body`); the training dataset
gives consecutive sample indices the same identity key (``MeshBodyConfig.identity_block``), so a DataLoader
worker reuses identities while every sample stays a deterministic function of its index.

The 3D labels of a mesh sample come from the *posed body* (:class:`lbi_ros.render.mesh.anny_body.PosedBody`): a
retargeting imperfection can make a pose less natural but never mislabels an image.

Heavy dependencies (anny, torch, moderngl) are imported on first use; nothing here is needed by the node or
the default demo (only ``lbi demo --body mesh``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from lbi_ros.geometry import Intrinsics
from lbi_ros.render.capsule.renderer import PersonRenderer, working_grid

if TYPE_CHECKING:
    from lbi_ros.synth.cameras import VirtualCamera


@dataclass(frozen=True)
class MeshBodyConfig:
    """Which samples get mesh people and how they look (``SyntheticDataConfig.mesh``)."""

    fraction: float = 0.0  # share of samples with a mesh person; 0 = capsule people only
    assets_dir: str = ""  # MakeHuman clothes/hair root (<dir>/clothes, <dir>/hair); empty = the vendored subset
    appearance: Literal["train", "heldout"] = "train"  # heldout: held-out garments, hair and body shapes
    identity_block: int = 8  # consecutive sample indices sharing one identity (amortises building a body)
    identities_cached: int = 12  # dressed identities kept per process (LRU)
    distractor_prob: float = 0.15  # another mesh person behind the subject (occlusion, "other people")
    jpeg_prob: float = 0.3
    jpeg_quality: tuple[int, int] = (35, 95)
    colour_jitter_prob: float = 0.5  # per-channel gain, gamma and saturation jitter
    raster_threads: int = 1  # llvmpipe threads per process (1 per DataLoader worker)

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError(f"mesh.fraction must be in [0, 1], got {self.fraction}")
        if self.appearance not in ("train", "heldout"):
            raise ValueError(f"mesh.appearance must be train/heldout, got {self.appearance!r}")
        if self.identity_block < 1 or self.identities_cached < 1 or self.raster_threads < 1:
            raise ValueError("mesh.identity_block, identities_cached and raster_threads must be >= 1")
        lo, hi = self.jpeg_quality
        if not 5 <= lo <= hi <= 100:
            raise ValueError(f"mesh.jpeg_quality must satisfy 5 <= lo <= hi <= 100, got {self.jpeg_quality}")
        for name in ("distractor_prob", "jpeg_prob", "colour_jitter_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"mesh.{name} must be in [0, 1]")


@dataclass(frozen=True)
class _Part:
    """One drawable part of an identity: faces and UVs fixed, vertices produced per pose by ``fit``."""

    name: str
    faces: np.ndarray  # (T, 3) uint32
    uv: np.ndarray  # (R, 2) float32
    texture: np.ndarray  # (h, w, 3) uint8
    fitter: Any  # lbi_ros.render.mesh.garments.GarmentFitter for this body, or None for the body itself


@dataclass(frozen=True)
class Identity:
    shape: Any  # anny_body.BodyShape
    rest: Any  # anny_body.RestBody
    parts: tuple[_Part, ...]


@dataclass(frozen=True)
class PosedPerson:
    """A posed, dressed person in the world (Z-up metres): drawable meshes and the 3D labels."""

    meshes: tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], ...]  # (vertices, faces, uv, texture)
    joints: np.ndarray  # (17, 3) H36M-17 labels from the posed body
    toes: np.ndarray  # (2, 3) [left, right]


class MeshPeople:
    """Builds, caches, poses and draws mesh people. One per process (the GL context is per process)."""

    def __init__(self, config: MeshBodyConfig = MeshBodyConfig()) -> None:  # noqa: B008 - frozen dataclass
        self.config = config
        self._model: Any = None
        self._library: Any = None
        self._raster: Any = None
        self._identities: OrderedDict[tuple[int, ...], Identity] = OrderedDict()

    # --- lazily built heavy state -------------------------------------------------------------------
    @property
    def model(self) -> Any:
        if self._model is None:
            from lbi_ros.render.mesh.anny_body import AnnyBodyModel

            self._model = AnnyBodyModel()
        return self._model

    @property
    def library(self) -> Any:
        if self._library is None:
            from lbi_ros.render.mesh.asset_library import AssetLibrary

            self._library = AssetLibrary(Path(self.config.assets_dir) if self.config.assets_dir else None)
        return self._library

    @property
    def raster(self) -> Any:
        if self._raster is None:
            from lbi_ros.render.mesh.mesh_raster import MeshRasterizer

            self._raster = MeshRasterizer(threads=self.config.raster_threads)
        return self._raster

    # --- identities and poses -----------------------------------------------------------------------
    def identity(self, key: Sequence[int]) -> Identity:
        """The dressed person for ``key`` (built from ``default_rng(key)``; cached, least recently used out)."""
        k = tuple(int(x) for x in key)
        ident = self._identities.get(k)
        if ident is not None:
            self._identities.move_to_end(k)
            return ident
        ident = self._build_identity(np.random.default_rng(list(k)))
        self._identities[k] = ident
        while len(self._identities) > self.config.identities_cached:
            self._identities.popitem(last=False)
        return ident

    def _build_identity(self, rng: np.random.Generator) -> Identity:
        from lbi_ros.render.mesh import textures
        from lbi_ros.render.mesh.anny_body import sample_body_shape
        from lbi_ros.render.mesh.asset_library import hidden_face_mask
        from lbi_ros.render.mesh.garments import GarmentFitter

        split = self.config.appearance
        shape = sample_body_shape(rng, split)
        rest = self.model.rest(shape)
        outfit = self.library.sample_outfit(rng, split)
        skin = textures.skin_texture(rng, textures.sample_skin_tone(rng))
        # The body is drawn as its unwelded render mesh (one UV per vertex): posed.vertices[render_to_vertex].
        kept = ~hidden_face_mask(outfit, rest.faces)  # skin under the outfit is not drawn
        body_faces = np.ascontiguousarray(rest.render_faces[kept], dtype=np.uint32)
        parts = [_Part("body", body_faces, np.asarray(rest.render_uv, np.float32), skin, None)]
        hair_colour = textures.sample_hair_colour(rng)
        for garment in outfit.garments:
            if garment.kind == "hair":
                tex = textures.hair_texture(rng, hair_colour)
            else:
                tex = textures.sample_cloth_texture(rng)
            parts.append(_Part(garment.name, np.ascontiguousarray(garment.faces, dtype=np.uint32),
                               np.asarray(garment.uvs, np.float32), tex, GarmentFitter(garment, rest.vertices)))
        return Identity(shape, rest, tuple(parts))

    def pose(self, identity: Identity, joints_w: np.ndarray, toes_w: np.ndarray) -> PosedPerson:
        """Retarget a mocap frame (H36M-17 (17, 3) + toes (2, 3), world metres) onto ``identity``."""
        posed = self.model.pose(identity.rest, joints_w, toes_w)
        meshes = []
        for part in identity.parts:
            if part.fitter is None:
                verts = posed.vertices[identity.rest.render_to_vertex]
            else:
                verts = part.fitter(posed.vertices)
            meshes.append((np.asarray(verts, np.float32), part.faces, part.uv, part.texture))
        return PosedPerson(tuple(meshes), np.asarray(posed.joints, np.float64), np.asarray(posed.toes, np.float64))

    # --- drawing ------------------------------------------------------------------------------------
    def draw(self, people: Sequence[PosedPerson], camera: VirtualCamera, intrinsics: Intrinsics, height: int, width: int,
             rng: np.random.Generator) -> Any:
        """Z-buffered draw of ``people`` (person k gets id k) -> ``mesh_raster.RenderedLayer``."""
        from lbi_ros.render.mesh.mesh_raster import MeshInstance, sample_lighting

        instances = [
            MeshInstance(np.ascontiguousarray(camera.world_to_camera(v), dtype=np.float32), f, uv, tex, k)
            for k, person in enumerate(people) for (v, f, uv, tex) in person.meshes
        ]
        return self.raster.draw(instances, intrinsics, height, width, sample_lighting(rng))

    def render_crop(
        self,
        people: Sequence[PosedPerson],
        camera: VirtualCamera,
        intrinsics: Intrinsics,
        height: int,
        width: int,
        rng: np.random.Generator,
        base: PersonRenderer,
        valid_region: tuple[float, float, float, float] | None = None,
        resolution_scale: float = 1.0,
    ) -> np.ndarray:
        """A training crop (height, width, 3) uint8 RGB; same contract as :meth:`PersonRenderer.render`
        (``intrinsics`` of the crop, ``valid_region``, ``resolution_scale``) with ``base`` supplying the
        backgrounds, occluders, blur and sensor noise."""
        from lbi_ros.render.mesh.mesh_raster import composite

        u = rng.random(6)
        h_r, w_r, intr = working_grid(intrinsics, height, width, resolution_scale)
        background = base.background(u[0], rng, h_r, w_r)
        image = composite(self.draw(people, camera, intr, h_r, w_r, rng), background)
        image = self.photometric(image, rng)
        return base.finish(image, u, rng, height, width, valid_region)

    def photometric(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Colour jitter (per-channel gain, gamma, saturation) and JPEG re-compression."""
        import cv2

        cfg = self.config
        u = rng.random(3)
        if u[0] < cfg.colour_jitter_prob:
            gain = rng.uniform(0.8, 1.2, 3)
            gamma = rng.uniform(0.75, 1.35)
            sat = rng.uniform(0.6, 1.3)
            x = np.power(image.astype(np.float32) / 255.0, gamma) * gain
            grey = x.mean(axis=2, keepdims=True)
            x = grey + (x - grey) * sat
            image = np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)
        if u[1] < cfg.jpeg_prob:
            lo, hi = cfg.jpeg_quality
            quality = int(lo + (hi - lo) * u[2])
            ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image[..., ::-1]),  # OpenCV codecs are BGR
                                   [cv2.IMWRITE_JPEG_QUALITY, quality])
            if ok:
                image = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
        return image
