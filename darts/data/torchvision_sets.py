"""The benchmark datasets torchvision downloads: CIFAR-10, CIFAR-100 and SVHN, read once into uint8 tensors.

Each returns a ``darts.data.datasets.Datasets`` of in-memory ``ImageData`` with its normalisation statistics. Absent
data that cannot be downloaded (no internet) is one clear line saying where it was looked for and how to point at a
local copy; never a silent fallback. torchvision is imported here only when a set is read: importing it brings
torch._dynamo (seconds in every process).
"""
from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Callable

import torch

from darts.data.datasets import Datasets, ImageData

logger = logging.getLogger(__name__)

# DARTS cnn/utils.py `_data_transforms_cifar10`.
CIFAR10_MEAN = (0.49139968, 0.48215827, 0.44653124)
CIFAR10_STD = (0.24703233, 0.24348505, 0.26158768)
# Per-channel statistics of the CIFAR-100 training set, rounded to 4 places (full values in
# weiaicunzai/pytorch-cifar100 conf/global_settings.py: CIFAR100_TRAIN_MEAN / CIFAR100_TRAIN_STD). P-DARTS
# utils.py `_data_transforms_cifar100` uses the slightly different (0.5071, 0.4867, 0.4408) / (0.2675, 0.2565, 0.2761).
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
# RobustDARTS src/utils.py `_data_transforms_svhn` (also SmoothDARTS and DARTS-PT sota/cnn/utils.py).
SVHN_MEAN = (0.4377, 0.4438, 0.4728)
SVHN_STD = (0.1980, 0.2010, 0.1970)
SVHN_CLASSES = tuple(str(d) for d in range(10))  # torchvision maps the digit 0's label 10 to 0
_DOWNLOAD_TIMEOUT_S = 30.0  # torchvision's urlopen has no timeout: a firewalled host would hang forever

Split = tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]  # images uint8 (N, 3, 32, 32), labels (N,), classes


def _read(name: str, path: Path, download: bool, load: Callable[[bool], Split], mean: tuple,
          std: tuple) -> Datasets:
    """The train and test splits ``load(train)`` reads (from ``path``); one clear error line when they are unavailable."""
    old_timeout = socket.getdefaulttimeout()  # process-wide, so restored as soon as torchvision returns
    socket.setdefaulttimeout(_DOWNLOAD_TIMEOUT_S)
    try:
        splits = [load(train) for train in (True, False)]
    except (RuntimeError, OSError) as e:  # OSError covers URLError and timeouts
        how = "and could not be downloaded" if download else "(download=False)"
        cause = " ".join(str(e).split())  # one line, whatever torchvision or urllib wrote
        short = name.split("-")[0].lower()
        raise FileNotFoundError(f"{name} not found at {path} {how} ({type(e).__name__}: {cause}); point at "
                                f"local data with dataset.root=/path/to/{short} (the folder holding {path.name}) "
                                f"or use dataset=imagefolder dataset.root=/path") from None
    finally:
        socket.setdefaulttimeout(old_timeout)
    out = [ImageData(images, labels.to(torch.int64), classes, mean, std) for images, labels, classes in splits]
    logger.info("%s: %d train / %d test images from %s", name, len(out[0]), len(out[1]), path.parent)
    return Datasets(*out)


def _cifar(cls: str, root: str, download: bool) -> Callable[[bool], Split]:
    """Reads one split of torchvision's CIFAR set ``cls`` (images stored (N, 32, 32, 3))."""
    def load(train: bool) -> Split:
        from torchvision import datasets
        s = getattr(datasets, cls)(root, train=train, download=download)
        return torch.from_numpy(s.data).permute(0, 3, 1, 2).contiguous(), torch.as_tensor(s.targets), tuple(s.classes)
    return load


def cifar10(root: str, download: bool = True) -> Datasets:
    """CIFAR-10 via torchvision (root holds cifar-10-batches-py), normalised with the DARTS statistics."""
    folder = Path(root).expanduser() / "cifar-10-batches-py"
    return _read("CIFAR-10", folder, download, _cifar("CIFAR10", root, download), CIFAR10_MEAN, CIFAR10_STD)


def cifar100(root: str, download: bool = True) -> Datasets:
    """CIFAR-100 via torchvision (root holds cifar-100-python)."""
    folder = Path(root).expanduser() / "cifar-100-python"
    return _read("CIFAR-100", folder, download, _cifar("CIFAR100", root, download), CIFAR100_MEAN, CIFAR100_STD)


def svhn(root: str, download: bool = True) -> Datasets:
    """SVHN via torchvision (root holds train_32x32.mat and test_32x32.mat): its train split (73,257 digits, without
    `extra`, as RobustDARTS src/search/args.py ``dset.SVHN(split='train')``) and test split (26,032)."""
    def load(train: bool) -> Split:
        from torchvision.datasets import SVHN
        s = SVHN(root, split="train" if train else "test", download=download)
        return torch.from_numpy(s.data).contiguous(), torch.as_tensor(s.labels), SVHN_CLASSES

    return _read("SVHN", Path(root).expanduser() / "train_32x32.mat", download, load, SVHN_MEAN, SVHN_STD)
