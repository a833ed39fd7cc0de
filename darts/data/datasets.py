"""Datasets (CIFAR and SVHN in darts/data/torchvision_sets.py, the loaders in darts/data/loaders.py, the search split
in darts/data/search_split.py).

A dataset function (`image_folder`, `fake`, `imagenet`, and those of torchvision_sets.py) returns a `Datasets` pair
whose `train` and `test` are either an in-memory `ImageData` (uint8 tensors) or a `StreamingData` (an image folder
read from disk per batch). Both expose the same method, so a trainer builds its loaders without knowing the
dataset's name::

    data = cifar10("/data/cifar")
    w_idx, a_idx = search_split(len(data.train))  # darts/data/search_split.py
    weights = data.train.loader(64, device, train=True, seed=seed, indices=w_idx)
    arch = data.train.loader(64, device, train=True, seed=seed + 1, indices=a_idx)
    test = data.test.loader(256, device, train=False)

(DARTS cnn/train_search.py draws both halves from the same augmented train set, hence train=True for both.)

`ImageData.loader` gives a `DeviceLoader` (data resident on the device, augmentation vectorised there);
`StreamingData.loader` gives a `StreamingLoader` (torch DataLoader with CPU workers). `PlainLoader` is the
reference CPU path for in-memory data (torchvision transforms, as in DARTS), used to check and benchmark
`DeviceLoader`. Every loader yields `(x, y)`: x float32 normalised `(B, 3, H, W)` and y int64 `(B,)` on the
device, and its randomness is a pure function of `(seed, epoch)` (`set_epoch`; each `iter()` then advances
the epoch by one), so a resumed run sees the same batches. For the DataLoader-based loaders that holds for
augmentation only with `num_workers > 0`: with 0 workers torchvision draws from the global torch RNG.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from darts.data.loaders import DeviceLoader, StreamingLoader, Transformed, check_eval_cutout, imagenet_transforms

logger = logging.getLogger(__name__)

# DARTS cnn/train_imagenet.py `normalize`.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True, eq=False)  # eq=False: comparing tensor fields elementwise makes no sense here
class ImageData:
    """An in-memory image classification set: images uint8 (N, 3, H, W) and labels int64 (N,) on the CPU."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    mean: tuple[float, float, float]  # per-channel normalisation, in [0, 1] units
    std: tuple[float, float, float]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4 or self.images.shape[1] != 3:
            raise ValueError(f"images must be uint8 (N, 3, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.shape != self.images.shape[:1]:
            raise ValueError(f"labels must be int64 ({len(self.images)},), got {self.labels.dtype} "
                             f"{tuple(self.labels.shape)}")
        if len(self.labels) and not 0 <= int(self.labels.min()) <= int(self.labels.max()) < len(self.classes):
            raise ValueError(f"labels must lie in [0, {len(self.classes)}), got [{int(self.labels.min())}, "
                             f"{int(self.labels.max())}]")

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.labels)

    def loader(self, batch_size: int, device: torch.device | str, train: bool, cutout: int = 0, seed: int = 0,
               indices: torch.Tensor | None = None) -> DeviceLoader:
        """Device-resident loader: train = shuffled, augmented, last partial batch dropped; else plain, in order."""
        check_eval_cutout(train, cutout)
        return DeviceLoader(self, batch_size, device, indices=indices, augment=train, cutout=cutout, shuffle=train,
                            drop_last=train, seed=seed)


@dataclass(frozen=True, eq=False)
class StreamingData:
    """An image folder read from disk per batch (for sets that do not fit in memory, e.g. ImageNet)."""

    folder: Any  # a torchvision ImageFolder
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    num_workers: int = 4  # DARTS cnn/train_imagenet.py

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names, in label order."""
        return tuple(self.folder.classes)

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.folder.classes)

    def __len__(self) -> int:
        return len(self.folder)

    def loader(self, batch_size: int, device: torch.device | str, train: bool, cutout: int = 0, seed: int = 0,
               indices: torch.Tensor | None = None) -> StreamingLoader:
        """DataLoader with the DARTS ImageNet transforms (train: augmented and shuffled; else in order)."""
        check_eval_cutout(train, cutout)
        tf = imagenet_transforms(train, self.mean, self.std, cutout)
        dataset = Transformed(self.folder, tf, indices)
        return StreamingLoader(dataset, batch_size, device, shuffle=train, drop_last=train, seed=seed,
                               num_workers=self.num_workers)


@dataclass(frozen=True)
class Datasets:
    """A train/test pair as returned by every dataset function."""

    train: ImageData | StreamingData
    test: ImageData | StreamingData

    @property
    def num_classes(self) -> int:
        """Number of classes (of the training split)."""
        return self.train.num_classes


def _split_dirs(root: str) -> tuple[Path, Path]:
    """root/train and root/test (else root/val), or a FileNotFoundError saying what was expected."""
    base = Path(root).expanduser()
    test = next((base / n for n in ("test", "val") if (base / n).is_dir()), None)
    if not (base / "train").is_dir() or test is None:
        raise FileNotFoundError(f"image folder {base} must contain train/ and test/ (or val/), each with one "
                                f"subfolder per class")
    return base / "train", test


def image_folders(train: Path, test: Path) -> tuple[Any, Any]:
    """torchvision ImageFolders of a train and a test split, the test split's labels following the train split's
    class indices (a test split missing a class keeps the others' labels right)."""
    from torchvision.datasets import ImageFolder
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    train_folder, test_folder = ImageFolder(str(train)), ImageFolder(str(test))
    unknown = sorted(set(test_folder.classes) - set(train_folder.class_to_idx))
    if unknown:
        raise ValueError(f"{test} has class folders {unknown} that the train split lacks")
    test_folder.samples = make_dataset(str(test), train_folder.class_to_idx, IMG_EXTENSIONS)
    test_folder.imgs, test_folder.targets = test_folder.samples, [label for _, label in test_folder.samples]
    test_folder.classes, test_folder.class_to_idx = train_folder.classes, train_folder.class_to_idx
    return train_folder, test_folder


def _read_images(folder: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """All images of folder as uint8 (N, 3, H, W) and labels (N,); every image must have the same size."""
    arrays, first = [], None
    for path, _ in folder.samples:
        try:
            img = Image.open(path)
            img.load()
        except OSError as err:  # PIL's UnidentifiedImageError and truncated files are OSErrors
            raise ValueError(f"{path} is not a readable image ({err}); remove or replace it") from None
        with img:
            if first is None:
                first = (path, img.size)
            elif img.size != first[1]:
                raise ValueError(f"{path} is {img.size[0]}x{img.size[1]} but {first[0]} is "
                                 f"{first[1][0]}x{first[1][1]}: image_folder needs all images the same size")
            arrays.append(np.asarray(img.convert("RGB")))
    if not arrays:
        raise ValueError(f"{folder.root} holds no images")
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()  # (N, 3, H, W)
    return images, torch.as_tensor(folder.targets, dtype=torch.int64)


def _channel_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std over all pixels, in [0, 1] units; chunked to bound memory."""
    s = torch.zeros(3, dtype=torch.float64)
    s2 = torch.zeros(3, dtype=torch.float64)
    for part in images.split(chunk):
        x = part.double()  # (b, 3, H, W)
        s += x.sum(dim=(0, 2, 3))
        s2 += x.square().sum(dim=(0, 2, 3))
    n = images.numel() / 3
    mean = s / n
    std = (s2 / n - mean.square()).clamp_min(0).sqrt()
    return tuple((mean / 255).tolist()), tuple((std / 255).tolist())


_READ: dict[tuple, Datasets] = {}  # image folders read by this process, by path and modification times


def image_folder(root: str) -> Datasets:
    """root/train and root/test (or root/val) in ImageFolder layout, read into memory; stats from train. A process
    reads a folder once (the runs of a sweep in one process share it) and again when a class folder changes."""
    train_dir, test_dir = _split_dirs(root)
    key = tuple((str(p.resolve()), p.stat().st_mtime_ns) for d in (train_dir, test_dir) for p in [d, *d.iterdir()])
    if key not in _READ:
        _READ.clear()  # one folder at a time: a second would double the memory
        _READ[key] = _read_folder(root, train_dir, test_dir)
    return _READ[key]


def _read_folder(root: str, train_dir: Path, test_dir: Path) -> Datasets:
    """The images of the train and test folders, with the train split's statistics."""
    train_folder, test_folder = image_folders(train_dir, test_dir)
    (x_tr, y_tr), (x_te, y_te) = _read_images(train_folder), _read_images(test_folder)
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise ValueError(f"{test_dir} images are {tuple(x_te.shape[2:])} but {train_dir} images are "
                         f"{tuple(x_tr.shape[2:])}")
    mean, std = _channel_stats(x_tr)
    classes = tuple(train_folder.classes)
    logger.info("image folder %s: %d train / %d test images, %d classes", root, len(y_tr), len(y_te), len(classes))
    return Datasets(ImageData(x_tr, y_tr, classes, mean, std), ImageData(x_te, y_te, classes, mean, std))


def fake(num_train: int = 512, num_test: int = 128, num_classes: int = 10, image_size: int = 32,
         seed: int = 0) -> Datasets:
    """Synthetic images (noise around a per-class colour, so it is learnable); for explicit smoke runs only."""
    g = torch.Generator().manual_seed(seed)
    colours = torch.randint(0, 256, (num_classes, 3, 1, 1), generator=g)  # (K, 3, 1, 1)

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, num_classes, (n,), generator=g)
        noise = torch.randint(-64, 65, (n, 3, image_size, image_size), generator=g)  # (n, 3, S, S)
        return (colours[y] + noise).clamp(0, 255).to(torch.uint8), y

    (x_tr, y_tr), (x_te, y_te) = make(num_train), make(num_test)
    mean, std = _channel_stats(x_tr)
    classes = tuple(f"class{k}" for k in range(num_classes))
    return Datasets(ImageData(x_tr, y_tr, classes, mean, std), ImageData(x_te, y_te, classes, mean, std))


def loader_workers(num_workers: int | str) -> int:
    """'auto' = every CPU core this process may use (a GPU step at batch 128 outruns DARTS's 4 decoding workers);
    else the number given (DARTS cnn/train_imagenet.py: 4)."""
    if num_workers == "auto":
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"dataset.num_workers={num_workers!r} is not valid: 'auto' or an integer >= 0")
    return num_workers


def imagenet(root: str, num_workers: int | str = "auto") -> Datasets:
    """ImageNet as root/train and root/val class folders, streamed from disk (DARTS cnn/train_imagenet.py) by
    ``loader_workers(num_workers)`` processes."""
    num_workers = loader_workers(num_workers)
    base = Path(root).expanduser()
    if not (base / "train").is_dir() or not (base / "val").is_dir():
        raise FileNotFoundError(f"ImageNet folder {base} must contain train/ and val/, each with one subfolder "
                                f"per class")
    train, val = image_folders(base / "train", base / "val")
    return Datasets(StreamingData(train, IMAGENET_MEAN, IMAGENET_STD, num_workers),
                    StreamingData(val, IMAGENET_MEAN, IMAGENET_STD, num_workers))

