"""Training data stream: global sample index -> rendered sample, batched by step (exact resume, DDP-safe).

Step ``s`` of rank ``r`` (of ``world`` processes) reads global samples ``(s * world + r) * B ... + B - 1``.
Global sample ``g`` is ``SyntheticPoseDataset`` sample ``g % samples_per_epoch`` of epoch
``g // samples_per_epoch`` (the dataset's own ``(seed, epoch, index)`` seeding), so what a step sees depends
neither on the number of DataLoader workers nor on where a run was resumed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from lbi_ros.preprocess import INPUT_NAMES
from lbi_ros.synth.dataset import SyntheticDataConfig, SyntheticPoseDataset, worker_init_fn

TRAIN_KEYS = (*INPUT_NAMES, "joints_3d")


class _BlankRenderer:
    """Stands in for the renderer when the model ignores the image (2D-only lifter): a black crop."""

    def render(self, joints_cam: Any, intrinsics: Any, height: int, width: int, rng: Any, **_: Any) -> np.ndarray:
        return np.zeros((height, width, 3), np.uint8)


class _ImagelessDataset(SyntheticPoseDataset):
    """The synthetic pipeline with rendering skipped (poses, cameras, noise and crop boxes unchanged)."""

    @property
    def renderer(self) -> Any:
        return _BlankRenderer()

    def render_mesh_crop(self, people: Any, cam: Any, crop_intr: Any, height: int, width: int,
                         *_: Any) -> np.ndarray:
        """Mesh people still set the labels (posed body); only the drawing is skipped."""
        return np.zeros((height, width, 3), np.uint8)


class StepDataset(torch.utils.data.Dataset):
    """Global sample index -> the training keys of one synthetic sample (float32 numpy)."""

    def __init__(self, config: SyntheticDataConfig, render_images: bool = True) -> None:
        self.config = config
        self.dataset = SyntheticPoseDataset(config) if render_images else _ImagelessDataset(config)
        self.render_images = render_images

    def __len__(self) -> int:  # unbounded stream; the sampler decides
        return 2**62

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config, "render_images": self.render_images}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["config"], state["render_images"])  # type: ignore[misc]

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        epoch, local = divmod(int(index), self.config.samples_per_epoch)
        rng = np.random.default_rng([self.config.seed, epoch, local])
        sample = self.dataset.generate(rng, self.dataset.identity_key(epoch, local))
        return {k: sample[k] for k in TRAIN_KEYS}


class StepBatchSampler(Sampler[list[int]]):
    """Yields the global sample indices of steps ``start_step .. end_step - 1`` for one rank."""

    def __init__(self, start_step: int, end_step: int, batch_size: int, rank: int = 0, world: int = 1) -> None:
        self.start_step, self.end_step = start_step, end_step
        self.batch_size, self.rank, self.world = batch_size, rank, world

    def __len__(self) -> int:
        return max(self.end_step - self.start_step, 0)

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start_step, self.end_step):
            base = (step * self.world + self.rank) * self.batch_size
            yield list(range(base, base + self.batch_size))


class BenchmarkStepDataset(torch.utils.data.Dataset):
    """Global sample index -> a benchmark sample (e.g. Human3.6M), reshuffled every pass with a fixed seed."""

    def __init__(self, dataset: Any, seed: int = 0) -> None:
        self.dataset, self.seed = dataset, seed
        self._order: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        epoch, local = divmod(int(index), len(self.dataset))
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, np.random.default_rng([self.seed, epoch]).permutation(len(self.dataset)))
        sample = self.dataset[int(self._order[1][local])]
        return {k: np.asarray(sample[k], np.float32) for k in TRAIN_KEYS}


def make_loader(
    config: SyntheticDataConfig, start_step: int, end_step: int, batch_size: int, num_workers: int = 0,
    render_images: bool = True, rank: int = 0, world: int = 1, dataset: Any = None,
) -> DataLoader:
    """A DataLoader over steps ``[start_step, end_step)``; workers render, the main process trains.

    ``dataset``: a benchmark dataset to stream instead of the synthetic one (``config`` then only seeds it).
    """
    return DataLoader(
        StepDataset(config, render_images) if dataset is None else BenchmarkStepDataset(dataset, config.seed),
        batch_sampler=StepBatchSampler(start_step, end_step, batch_size, rank, world),
        num_workers=num_workers,
        worker_init_fn=worker_init_fn if num_workers else None,
        persistent_workers=False,
        prefetch_factor=4 if num_workers else None,
        # its own generator: creating an iterator must not draw from the global RNG (exact resume)
        generator=torch.Generator().manual_seed(0),
    )
