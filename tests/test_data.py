"""Tests for darts/data: datasets, the search split and the loaders."""
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image

import darts.data.datasets as D
import darts.data.loaders as L
import darts.data.search_split as S
import darts.data.torchvision_sets as TV

MINI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-mini"


@pytest.fixture(scope="module")
def mini() -> D.Datasets:
    if not MINI.is_dir():
        pytest.skip(f"real test data absent: {MINI} (see ../shared/data/README.md)")
    return D.image_folder(str(MINI))


def _ramp(n: int = 512, size: int = 32) -> D.ImageData:
    """Images whose channel 0 is 1 + column and channel 1 is 1 + row (0 only where zero padding leaks in)."""
    coords = torch.arange(1, size + 1, dtype=torch.uint8)
    img = torch.stack([coords.expand(size, size), coords[:, None].expand(size, size), torch.zeros(size, size,
                                                                                              dtype=torch.uint8)])
    return D.ImageData(img.expand(n, 3, size, size).contiguous(), torch.zeros(n, dtype=torch.int64), ("a",),
                       (0.0, 0.0, 0.0), (1 / 255, 1 / 255, 1 / 255))  # x equals the uint8 value


def _reference(images: torch.Tensor, mean, std) -> torch.Tensor:
    """torchvision ToTensor + Normalize on PIL images, as DARTS' valid_transform."""
    tf = T.Compose([T.ToTensor(), T.Normalize(mean, std)])
    return torch.stack([tf(Image.fromarray(im.permute(1, 2, 0).numpy())) for im in images])


def test_image_folder_reads_cifar10_mini(mini):
    """cifar10-mini loads as 5,170 / 1,017 uint8 32x32 images in 10 CIFAR classes with CIFAR-like statistics."""
    assert mini.train.images.shape == (5170, 3, 32, 32) and mini.test.images.shape == (1017, 3, 32, 32)
    assert mini.train.images.dtype == torch.uint8 and mini.train.labels.dtype == torch.int64
    assert mini.num_classes == 10 and mini.train.classes[0] == "airplane" and mini.test.classes == mini.train.classes
    assert set(mini.train.labels.tolist()) == set(range(10)) == set(mini.test.labels.tolist())
    assert np.allclose(mini.train.mean, TV.CIFAR10_MEAN, atol=0.01) and np.allclose(mini.train.std, TV.CIFAR10_STD,
                                                                                  atol=0.01)


def test_image_folder_rejects_mixed_sizes(tmp_path):
    """An image of another size stops image_folder with a ValueError naming the file and both sizes."""
    for split, name, size in [("train", "a.png", (8, 8)), ("train", "b.png", (9, 7)), ("test", "c.png", (8, 8))]:
        (tmp_path / split / "cls").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size).save(tmp_path / split / "cls" / name)
    with pytest.raises(ValueError, match=r"b\.png is 9x7 but .*a\.png is 8x8"):
        D.image_folder(str(tmp_path))


def test_image_folder_without_test_split(tmp_path):
    """A folder with train/ but neither test/ nor val/ raises an error naming the folder and the layout."""
    (tmp_path / "train" / "cls").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path}.*train/ and test/ \(or val/\)"):
        D.image_folder(str(tmp_path))


@pytest.mark.parametrize("download", [True, False])
def test_missing_cifar_is_one_clear_line(tmp_path, download):
    """Absent CIFAR (no internet to download it) fails fast with one line saying how to point at local data."""
    start = time.monotonic()
    with pytest.raises(FileNotFoundError) as err:
        TV.cifar10(str(tmp_path), download=download)
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / "cifar-10-batches-py") in msg
    assert "dataset.root=/path/to/cifar" in msg and "dataset=imagefolder dataset.root=/path" in msg
    assert time.monotonic() - start < 40  # the download guard (30 s socket timeout) bounds a hang


def test_missing_svhn_is_one_clear_line(tmp_path):
    """Absent SVHN (not downloaded, download=false) is one line naming the file looked for and how to point at data."""
    with pytest.raises(FileNotFoundError) as err:
        TV.svhn(str(tmp_path), download=False)
    msg = str(err.value)
    assert "\n" not in msg and f"SVHN not found at {tmp_path / 'train_32x32.mat'}" in msg
    assert "dataset.root=/path/to/svhn" in msg


def test_search_split_is_disjoint_covering_and_seeded():
    """The two halves are disjoint, cover range(num), have floor(portion*num) weight samples and follow the seed."""
    w, a = S.search_split(1001, 0.5, seed=3)
    assert len(w) == 500 and len(a) == 501
    assert torch.equal(torch.cat([w, a]).sort().values, torch.arange(1001))
    w2, a2 = S.search_split(1001, 0.5, seed=3)
    assert torch.equal(w, w2) and torch.equal(a, a2)
    assert not torch.equal(w, S.search_split(1001, 0.5, seed=4)[0])
    with pytest.raises(ValueError, match="portion"):
        S.search_split(10, 1.0)


def test_device_loader_eval_equals_torchvision(mini):
    """Un-augmented DeviceLoader batches (on an index subset) equal torchvision ToTensor+Normalize, in order."""
    idx = torch.tensor([5, 0, 99, 1016, 42])
    loader = mini.test.loader(2, "cpu", train=False, indices=idx)
    xs, ys = zip(*loader)
    assert len(loader) == 3 and [len(y) for y in ys] == [2, 2, 1]
    x, y = torch.cat(xs), torch.cat(ys)
    assert x.dtype == torch.float32 and x.shape == (5, 3, 32, 32) and y.dtype == torch.int64
    assert torch.equal(y, mini.test.labels[idx])
    assert torch.allclose(x, _reference(mini.test.images[idx], mini.test.mean, mini.test.std), atol=1e-6)


def test_plain_loader_matches_device_loader_eval(mini):
    """The reference PlainLoader and DeviceLoader give identical eval batches."""
    idx = torch.arange(0, 1017, 7)
    dev = L.DeviceLoader(mini.test, 32, "cpu", indices=idx, augment=False, shuffle=False, drop_last=False)
    plain = L.PlainLoader(mini.test, 32, "cpu", indices=idx, augment=False, shuffle=False, drop_last=False,
                          num_workers=0)
    assert len(dev) == len(plain)
    for (a, y), (b, z) in zip(dev, plain):
        assert torch.equal(y, z) and torch.allclose(a, b, atol=1e-6)


def test_device_loader_is_a_function_of_seed_and_epoch(mini):
    """Same (seed, epoch) gives the same batches even on a fresh loader (exact resume); other epochs/seeds differ."""
    def epoch(loader, e):
        loader.set_epoch(e)
        return [b for b in loader]
    make = lambda seed: mini.train.loader(64, "cpu", train=True, cutout=16, seed=seed, indices=torch.arange(640))
    run, fresh = make(0), make(0)
    first = epoch(run, 3)
    for a, b in zip(first, epoch(fresh, 3)):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert len(first) == 10
    assert not torch.equal(first[0][0], epoch(run, 4)[0][0])
    assert not torch.equal(first[0][0], epoch(make(1), 3)[0][0])
    run.set_epoch(3)
    list(run)  # iterating advances to epoch 4
    assert torch.equal(next(iter(run))[0], epoch(fresh, 4)[0][0])


def test_crop_offsets_and_flips_follow_darts():
    """Crops come from offsets 0..8 of the 4-zero-padded image, each roughly 1/9 of the time; flips ~50%."""
    data = _ramp(2048)
    x = torch.cat([b for b, _ in L.DeviceLoader(data, 256, "cpu", seed=5)]).round()  # (N, 3, 32, 32)
    cols, rows = x[:, 0, 16], x[:, 1, :, 16]  # centre row of channel 0, centre column of channel 1
    flipped = cols[:, 20] < cols[:, 10]
    assert 0.45 < flipped.float().mean() < 0.55
    oy = rows[:, 16] - 13  # 1 + (16 + oy - 4)
    ox = torch.where(flipped, cols[:, 15], cols[:, 16]) - 13
    for off in (oy, ox):
        counts = torch.bincount(off.long(), minlength=9)
        assert len(counts) == 9 and counts.min() > 2048 / 9 * 0.7 and counts.max() < 2048 / 9 * 1.3
    assert torch.equal((cols == 0).sum(1), (ox - 4).abs())  # exactly |ox - 4| padding columns, all zero


def test_device_augment_output_is_a_torchvision_crop_flip(mini):
    """Each augmented image equals one of torchvision's 9x9x2 crops/flips of the padded source image."""
    idx = torch.arange(12)
    x, _ = next(iter(L.DeviceLoader(mini.train, 12, "cpu", indices=idx, shuffle=False, seed=2)))
    norm = T.Normalize(mini.train.mean, mini.train.std)
    for img, out in zip(mini.train.images[idx], x):
        padded = TF.pad(Image.fromarray(img.permute(1, 2, 0).numpy()), 4)
        cands = [TF.crop(padded, t, l, 32, 32) for t in range(9) for l in range(9)]
        cands = torch.stack([norm(TF.to_tensor(c)) for c in cands + [TF.hflip(c) for c in cands]])
        assert (cands - out).abs().amax(dim=(1, 2, 3)).min() < 1e-6


def test_augmentation_shifts_mean_image(mini):
    """With augment the mean image's border darkens (zero padding leaks in); without it the mean image is exact."""
    def mean_image(augment):
        loader = mini.train.loader(517, "cpu", train=augment)
        return torch.cat([x for x, _ in loader]).mean(0)  # (3, 32, 32)
    plain, aug = mean_image(False), mean_image(True)
    assert aug[:, :, 0].mean() < plain[:, :, 0].mean() - 0.1
    assert (aug[:, 12:20, 12:20] - plain[:, 12:20, 12:20]).abs().mean() < 0.05


@pytest.mark.parametrize("length", [16, 5])
def test_cutout_zeroes_one_clipped_square(length):
    """Cutout zeroes the same axis-aligned square in all channels, side 2*(L//2) unless clipped by the border."""
    data = D.ImageData(torch.full((256, 3, 32, 32), 200, dtype=torch.uint8), torch.zeros(256, dtype=torch.int64),
                       ("a",), (0.1, 0.2, 0.3), (0.2, 0.2, 0.2))
    x = torch.cat([b for b, _ in L.DeviceLoader(data, 64, "cpu", augment=False, cutout=length, seed=1)])
    zero = x == 0
    assert torch.equal(zero, zero[:, :1].expand_as(zero))
    mask = zero[:, 0]  # (N, 32, 32)
    rows, cols = mask.any(2), mask.any(1)
    assert torch.equal(mask, rows[:, :, None] & cols[:, None, :])
    side = 2 * (length // 2)
    assert rows.sum(1).max() == side and cols.sum(1).max() == side and (rows.sum(1) < side).any()
    ref = torch.stack([L.Cutout(length)(torch.ones(3, 32, 32))[0] == 0 for _ in range(256)])
    assert ref.any(2).sum(1).max() == side


def test_plain_loader_augmentation_is_seeded(mini):
    """With worker processes, PlainLoader's order and augmentation depend only on (seed, epoch)."""
    make = lambda: L.PlainLoader(mini.train, 32, "cpu", indices=torch.arange(64), cutout=8, seed=1, num_workers=1)
    a, b = make(), make()
    a.set_epoch(2), b.set_epoch(2)
    assert all(torch.equal(u[0], v[0]) for u, v in zip(a, b))


def test_loader_rejects_bad_arguments(mini):
    """Impossible batch sizes, cutout on an eval loader and negative seeds raise ValueError."""
    with pytest.raises(ValueError, match="batch_size"):
        mini.test.loader(2000, "cpu", train=True)
    with pytest.raises(ValueError, match="cutout"):
        mini.test.loader(8, "cpu", train=False, cutout=16)
    with pytest.raises(ValueError, match="seed"):
        mini.test.loader(8, "cpu", train=True, seed=-1)


def test_fake_is_seeded_and_well_formed():
    """fake() yields uint8 images and in-range labels, identical for the same seed."""
    a, b = D.fake(64, 16, 5, 16, seed=1), D.fake(64, 16, 5, 16, seed=1)
    assert a.train.images.shape == (64, 3, 16, 16) and a.test.images.shape == (16, 3, 16, 16)
    assert torch.equal(a.train.images, b.train.images) and int(a.train.labels.max()) < 5


def test_imagenet_streams_darts_crops(tmp_path):
    """imagenet() streams train/ and val/ folders: 224x224 batches from the DARTS train and eval transforms."""
    for split in ("train", "val"):
        for k, cls in enumerate(("n01", "n02")):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(3):
                img = Image.fromarray(np.full((300, 280, 3), 40 * (k + i), np.uint8))
                img.save(tmp_path / split / cls / f"{i}.png")
    data = D.imagenet(str(tmp_path), num_workers=0)
    assert data.num_classes == 2 and len(data.train) == 6
    for train in (True, False):
        x, y = next(iter(data.test.loader(4, "cpu", train=train)))
        assert x.shape == (4, 3, 224, 224) and x.dtype == torch.float32 and y.dtype == torch.int64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_device_loader_has_no_host_sync_per_batch():
    """Iterating an augmenting DeviceLoader on CUDA triggers no device-to-host synchronisation."""
    data = D.fake(1024, 16)
    loader = data.train.loader(128, "cuda", train=True, cutout=16, seed=0)
    torch.cuda.set_sync_debug_mode("error")
    try:
        for x, y in loader:
            assert x.is_cuda and y.is_cuda
    finally:
        torch.cuda.set_sync_debug_mode("default")
