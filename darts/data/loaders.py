"""Loaders: every loader yields ``(x, y)`` with x float32 normalised (B, 3, H, W) and y int64 (B,) on the device.

`DeviceLoader` (the fast default) keeps uint8 images on the device and augments there; `PlainLoader` is the
reference CPU path (torch DataLoader + torchvision transforms, as DARTS); `StreamingLoader` reads a dataset
that does not fit in memory (ImageNet). Randomness is a pure function of ``(seed, epoch)`` (``set_epoch``).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterator, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset

CROP_PADDING = 4  # DARTS cnn/utils.py: RandomCrop(32, padding=4), zero fill


class LabelledImages(Protocol):
    """What the in-memory loaders read (``darts.data.datasets.ImageData``): uint8 images (N, 3, H, W) and int64 labels (N,)
    on the CPU, with the per-channel mean and std that normalise them."""

    images: torch.Tensor
    labels: torch.Tensor
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def check_eval_cutout(train: bool, cutout: int) -> None:
    """Cutout is a training augmentation: reject it on an eval loader rather than ignore it."""
    if cutout and not train:
        raise ValueError(f"cutout={cutout} is for training loaders only; use cutout=0 with train=False")


def _epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed 63-bit seed that depends only on (seed, epoch)."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def _check_args(n: int, batch_size: int, drop_last: bool, seed: int, cutout: int = 0) -> None:
    """ValueError for a batch size, seed or cutout length that cannot work."""
    if seed < 0:
        raise ValueError(f"seed={seed} must be >= 0")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    if drop_last and n < batch_size:
        raise ValueError(f"batch_size={batch_size} exceeds the {n} samples with drop_last=True: no batch")
    if cutout < 0:
        raise ValueError(f"cutout={cutout} must be >= 0 (0 disables it)")


class EpochSeeded:
    """A loader whose order and augmentation are fixed by (seed, epoch); ``set_epoch`` picks the epoch."""

    seed: int
    epoch: int
    _gen: torch.Generator

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and augmentation the next iteration produces."""
        if epoch < 0:
            raise ValueError(f"epoch={epoch} must be >= 0")
        self.epoch = epoch

    def _start_epoch(self) -> None:
        """Seed the generator with (seed, epoch) for this iteration; the next one is the following epoch."""
        self._gen.manual_seed(_epoch_seed(self.seed, self.epoch))
        self.epoch += 1


class DeviceLoader(EpochSeeded):
    """Batches of `LabelledImages` (e.g. `darts.data.datasets.ImageData`), uint8 images kept on the device and the DARTS
    CIFAR augmentation done there.

    Same maths as DARTS cnn/utils.py `_data_transforms_cifar10` (RandomCrop(H, padding=4) with zero fill,
    RandomHorizontalFlip, ToTensor, Normalize, then Cutout on the normalised tensor), vectorised over the batch
    with a `torch.Generator` on the device: no per-sample Python loops, no host syncs per batch.

    Args: data (its images, or only `images[indices]`, are copied to `device` once); batch_size B; indices
    (M,) int64 subset of the samples (e.g. one half of `search_split`); augment: random crop + flip; cutout:
    square side, 0 = off; shuffle; drop_last: skip the final partial batch; seed (with the epoch) fixes all
    randomness. Yields x float32 (B, 3, H, W) normalised and y int64 (B,), both on `device`.
    """

    def __init__(self, data: LabelledImages, batch_size: int, device: torch.device | str,
                 indices: torch.Tensor | None = None, augment: bool = True, cutout: int = 0, shuffle: bool = True,
                 drop_last: bool = True, seed: int = 0):
        if indices is not None:
            indices = indices.cpu()
        images, labels = (data.images, data.labels) if indices is None else (data.images[indices], data.labels[indices])
        _check_args(len(labels), batch_size, drop_last, seed, cutout)
        self.device = torch.device(device)
        self.images = images.to(self.device)  # (N, 3, H, W) uint8; only the chosen subset is moved
        self.labels = labels.to(self.device)  # (N,)
        self.mean = torch.tensor(data.mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(data.std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.batch_size, self.augment, self.cutout = batch_size, augment, cutout
        self.shuffle, self.drop_last, self.seed, self.epoch = shuffle, drop_last, seed, 0
        self._gen = torch.Generator(device=self.device)

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self._start_epoch()
        n = len(self.labels)
        order = (torch.randperm(n, generator=self._gen, device=self.device) if self.shuffle
                 else torch.arange(n, device=self.device))  # (N,)
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]  # (B,)
            x = self.images[idx]  # (B, 3, H, W) uint8
            if self.augment:
                x = self._crop_flip(x)
            x = x.float().div_(255).sub_(self.mean).div_(self.std)  # ToTensor + Normalize, (B, 3, H, W)
            if self.cutout:
                x = self._cutout(x)
            yield x, self.labels[idx]

    def _crop_flip(self, x: torch.Tensor) -> torch.Tensor:
        """Random crop of the zero-padded image at a per-sample offset, then a flip with probability 1/2."""
        b, _, h, w = x.shape
        p, dev, g = CROP_PADDING, self.device, self._gen
        padded = F.pad(x, (p, p, p, p))  # (B, 3, H+2p, W+2p), zeros as torchvision's fill=0
        oy = torch.randint(0, 2 * p + 1, (b, 1), generator=g, device=dev)  # (B, 1) top-left offsets
        ox = torch.randint(0, 2 * p + 1, (b, 1), generator=g, device=dev)
        flip = torch.rand((b, 1), generator=g, device=dev) < 0.5  # (B, 1)
        cols = torch.arange(w, device=dev)  # (W,)
        cols = ox + torch.where(flip, w - 1 - cols, cols)  # (B, W): a flip reverses the crop window
        rows = oy + torch.arange(h, device=dev)  # (B, H)
        bi = torch.arange(b, device=dev).view(b, 1, 1, 1)
        ci = torch.arange(3, device=dev).view(1, 3, 1, 1)
        return padded[bi, ci, rows.view(b, 1, h, 1), cols.view(b, 1, 1, w)]  # (B, 3, H, W)

    def _cutout(self, x: torch.Tensor) -> torch.Tensor:
        """DARTS cnn/utils.py Cutout: centre uniform over the image, square [c - L//2, c + L//2) clipped, zeroed."""
        b, _, h, w = x.shape
        half, dev = self.cutout // 2, self.device
        cy = torch.randint(0, h, (b, 1), generator=self._gen, device=dev)  # (B, 1)
        cx = torch.randint(0, w, (b, 1), generator=self._gen, device=dev)
        rows, cols = torch.arange(h, device=dev), torch.arange(w, device=dev)
        in_y = (rows >= cy - half) & (rows < cy + half)  # (B, H)
        in_x = (cols >= cx - half) & (cols < cx + half)  # (B, W)
        return x.masked_fill((in_y[:, :, None] & in_x[:, None, :])[:, None], 0.0)  # (B, 3, H, W)


class Cutout:
    """DARTS cnn/utils.py Cutout on one normalised (3, H, W) tensor, drawing from the global torch RNG."""

    def __init__(self, length: int):
        self.length = length

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[1:]
        cy, cx = int(torch.randint(0, h, ())), int(torch.randint(0, w, ()))
        half = self.length // 2
        img[:, max(cy - half, 0):min(cy + half, h), max(cx - half, 0):min(cx + half, w)] = 0.0
        return img


class _PILImages(Dataset):
    """(PIL image, label) pairs from uint8 tensors, as torchvision's CIFAR10 hands them to its transforms."""

    def __init__(self, data: LabelledImages, indices: torch.Tensor | None):
        self.images = data.images if indices is None else data.images[indices]
        self.labels = data.labels if indices is None else data.labels[indices]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Image.Image, int]:
        return Image.fromarray(self.images[i].permute(1, 2, 0).numpy()), int(self.labels[i])


class Transformed(Dataset):
    """base[i] with transform applied to the image, optionally restricted to indices."""

    def __init__(self, base: Dataset, transform: Callable, indices: torch.Tensor | None = None):
        self.base = base if indices is None else Subset(base, indices.tolist())
        self.transform = transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img, y = self.base[i]
        return self.transform(img), y


def _cifar_transforms(size: tuple[int, int], augment: bool, cutout: int, mean: tuple, std: tuple) -> Any:
    """DARTS cnn/utils.py `_data_transforms_cifar10` (train when augment, else valid), for any square size."""
    from torchvision import transforms as T  # noqa: N812  (imported when used: torchvision brings torch._dynamo)

    tf = [T.RandomCrop(size, padding=CROP_PADDING), T.RandomHorizontalFlip()] if augment else []
    tf += [T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose(tf + ([Cutout(cutout)] if cutout else []))


def imagenet_transforms(train: bool, mean: tuple, std: tuple, cutout: int) -> Any:
    """DARTS cnn/train_imagenet.py transforms (cutout, off by default there, appended when asked for)."""
    from torchvision import transforms as T  # noqa: N812  (imported when used: torchvision brings torch._dynamo)

    if not train:
        return T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(mean, std)])
    tf = [T.RandomResizedCrop(224), T.RandomHorizontalFlip(),
          T.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.2), T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose(tf + ([Cutout(cutout)] if cutout else []))


class StreamingLoader(EpochSeeded):
    """A torch DataLoader whose shuffling and worker seeds come from (seed, epoch); batches moved to the device."""

    def __init__(self, dataset: Dataset, batch_size: int, device: torch.device | str, shuffle: bool = True,
                 drop_last: bool = True, seed: int = 0, num_workers: int = 4):
        _check_args(len(dataset), batch_size, drop_last, seed)
        self.device, self.seed, self.epoch = torch.device(device), seed, 0
        self._gen = torch.Generator()
        self._loader = DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                                  num_workers=num_workers, generator=self._gen,
                                  pin_memory=self.device.type == "cuda")

    def __len__(self) -> int:
        return len(self._loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self._start_epoch()
        for x, y in self._loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


class PlainLoader(StreamingLoader):
    """Reference path for a `LabelledImages`: torch DataLoader + torchvision transforms on CPU workers (as DARTS)."""

    def __init__(self, data: LabelledImages, batch_size: int, device: torch.device | str,
                 indices: torch.Tensor | None = None, augment: bool = True, cutout: int = 0, shuffle: bool = True,
                 drop_last: bool = True, seed: int = 0, num_workers: int = 2):
        _check_args(len(data) if indices is None else len(indices), batch_size, drop_last, seed, cutout)
        tf = _cifar_transforms(tuple(data.images.shape[-2:]), augment, cutout, data.mean, data.std)
        super().__init__(Transformed(_PILImages(data, indices), tf), batch_size, device, shuffle=shuffle,
                         drop_last=drop_last, seed=seed, num_workers=num_workers)
