"""CIFAR-10, CIFAR-100, MNIST and Fashion-MNIST prepared from the public archives.

Archives live in one directory (default ``data/archives/``) under their upstream names;
Fashion-MNIST's, whose names are MNIST's, in its subdirectory ``fashion_mnist/``. Each is
verified against the MD5 published with torchvision before anything else happens; a missing or
corrupt archive is a one-line error saying what to do, and leaves any earlier output untouched.
With ``download=True`` missing archives are fetched with torchvision's downloader.

We extract and read the archives ourselves (tarfile, gzip, pickle; torchvision's idx reader for
MNIST and Fashion-MNIST) because torchvision's dataset classes re-check every member file against
further checksums, which would defeat tests with tiny archives; the archive checksum covers them
anyway.

Splits (the official test sets are never used): a permutation of the official training images
seeded with ``split_seed``; its last ``n_val`` images form the validation split, the rest the
training split (CIFAR 45000/5000, MNIST and Fashion-MNIST 50000/10000). ``n_train`` takes a
seeded subset of that training split; validation is unchanged.
"""

from __future__ import annotations

import gzip
import hashlib
import pickle
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from iterconv.errors import UserError

MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
IDX_FILES = (  # MNIST's and Fashion-MNIST's archive names
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


# How to allow downloads, in each way the preparation is started.
DOWNLOAD_HOW = (
    "set `download: true` in params.yaml or pass --config download=true to snakemake "
    "(or --download to iterconv prepare)"
)


@dataclass(frozen=True)
class Source:
    files: dict[str, str]  # archive file name -> published MD5
    urls: dict[str, str]  # archive file name -> download URL
    num_classes: int
    augment: str
    n_val: int
    subdir: str = ""  # where the archives lie inside the archives directory


# The published checksums (identical to torchvision's CIFAR10.tgz_md5, CIFAR100.tgz_md5,
# MNIST.resources and FashionMNIST.resources; a test checks that). Tests substitute tiny
# archives by patching this table.
SOURCES: dict[str, Source] = {
    "cifar10": Source(
        {"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"},
        {"cifar-10-python.tar.gz": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"},
        10,
        "crop_flip",
        5000,
    ),
    "cifar100": Source(
        {"cifar-100-python.tar.gz": "eb9058c3a382ffc7106e4002c42a8d85"},
        {"cifar-100-python.tar.gz": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"},
        100,
        "crop_flip",
        5000,
    ),
    "mnist": Source(
        {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        {f: MNIST_URL + f for f in IDX_FILES},
        10,
        "crop",
        10000,
    ),
    "fashion_mnist": Source(
        {
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        {f: FASHION_MNIST_URL + f for f in IDX_FILES},
        10,
        "crop",  # no horizontal flips, as for MNIST (the paper's section 4.1 uses none at all)
        10000,
        subdir="fashion_mnist",  # the same file names as MNIST's
    ),
}


def md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def ensure_archives(dataset: str, archives: Path, download: bool = False) -> dict[str, str]:
    """Check (or fetch) every archive of ``dataset``; returns {file name: md5}."""
    src = SOURCES[dataset]
    folder = archives / src.subdir
    for fname, expected in src.files.items():
        path = folder / fname
        if not path.is_file():
            if not download:
                raise UserError(
                    f"archive {fname} not found: download {src.urls[fname]} (MD5 {expected}) "
                    f"and place it at {path.resolve()}, or let it be downloaded: {DOWNLOAD_HOW}"
                )
            _download(src.urls[fname], folder, fname, expected)
        actual = md5(path)
        if actual != expected:
            raise UserError(
                f"archive {path} is corrupt (MD5 {actual}, expected {expected}): delete it and "
                f"download it again from {src.urls[fname]}"
            )
    return dict(src.files)


def _download(url: str, archives: Path, fname: str, expected: str) -> None:
    from torchvision.datasets.utils import download_url

    try:
        archives.mkdir(parents=True, exist_ok=True)
        download_url(url, str(archives), filename=fname, md5=expected)
    except (OSError, RuntimeError) as err:  # URLError is an OSError
        raise UserError(
            f"cannot download {url} to {archives} ({' '.join(str(err).split())}): without "
            f"network access download it elsewhere and place it at {archives / fname}"
        ) from err


# --- reading the upstream formats ---------------------------------------------------------


def _safe_extract(archive: Path, dest: Path) -> None:
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(dest, filter="data")  # refuses absolute paths, links out of dest, ...


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as fh:
        return pickle.load(fh, encoding="bytes")


def read_cifar(dataset: str, archives: Path, work: Path) -> tuple[np.ndarray, np.ndarray]:
    """The official training images (N, 3, 32, 32) uint8 and labels (N,) int64."""
    (fname,) = SOURCES[dataset].files
    _safe_extract(archives / fname, work)
    if dataset == "cifar10":
        batches = [work / "cifar-10-batches-py" / f"data_batch_{i}" for i in range(1, 6)]
        key = b"labels"
    else:
        batches = [work / "cifar-100-python" / "train"]
        key = b"fine_labels"
    entries = [_unpickle(b) for b in batches]
    x = np.concatenate([np.asarray(e[b"data"], np.uint8) for e in entries]).reshape(-1, 3, 32, 32)
    y = np.concatenate([np.asarray(e[key], np.int64) for e in entries])
    return x, y


def read_mnist(archives: Path, work: Path) -> tuple[np.ndarray, np.ndarray]:
    """The official training images (N, 1, 28, 28) uint8 and labels (N,) int64 of the IDX
    archives in ``archives`` (MNIST or Fashion-MNIST)."""
    from torchvision.datasets.mnist import read_image_file, read_label_file

    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        with gzip.open(archives / f"{stem}.gz", "rb") as src, open(work / stem, "wb") as dst:
            shutil.copyfileobj(src, dst)
    x = read_image_file(str(work / "train-images-idx3-ubyte")).numpy()[:, None]
    y = read_label_file(str(work / "train-labels-idx1-ubyte")).numpy().astype(np.int64)
    return np.ascontiguousarray(x, np.uint8), y


# --- splits --------------------------------------------------------------------------------


def split_indices(
    n: int, n_val: int, split_seed: int, n_train: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, val) indices into the n official training images, each sorted."""
    if not 0 < n_val < n:
        raise UserError(f"n_val must be between 1 and {n - 1}, got {n_val}")
    perm = np.random.Generator(np.random.PCG64([split_seed, 0])).permutation(n)
    train, val = perm[: n - n_val], perm[n - n_val :]
    if n_train is not None:
        if not 0 < n_train <= len(train):
            raise UserError(f"n_train must be between 1 and {len(train)}, got {n_train}")
        rng = np.random.Generator(np.random.PCG64([split_seed, 1]))  # own stream for the subset
        train = rng.choice(train, size=n_train, replace=False)
    return np.sort(train), np.sort(val)


def prepare(
    dataset: str,
    out: str | Path,
    archives: str | Path = "data/archives",
    *,
    download: bool = False,
    n_train: int | None = None,
    n_val: int | None = None,
    split_seed: int = 0,
    name: str | None = None,
) -> dict:
    """Verify the archives, split, and write the prepared dataset ``out``; returns its manifest."""
    from iterconv.data.store import check_output_dir, write_prepared

    if dataset not in SOURCES:
        raise UserError(f"unknown dataset {dataset!r}; expected one of {sorted(SOURCES)}")
    out, archives, src = Path(out), Path(archives), SOURCES[dataset]
    check_output_dir(out)
    checksums = ensure_archives(dataset, archives, download)
    n_val = src.n_val if n_val is None else n_val
    with tempfile.TemporaryDirectory(prefix="iterconv-extract-") as work:
        if dataset in ("mnist", "fashion_mnist"):
            x, y = read_mnist(archives / src.subdir, Path(work))
        else:
            x, y = read_cifar(dataset, archives, Path(work))
    train, val = split_indices(len(x), n_val, split_seed, n_train)
    params = {
        "dataset": dataset,
        "split_seed": split_seed,
        "n_train": n_train,
        "n_val": n_val,
        "archives_md5": checksums,
        "official_train_images": len(x),
    }
    return write_prepared(
        out,
        train={"x": x[train], "y": y[train]},
        val={"x": x[val], "y": y[val]},
        name=name or out.name,
        source=dataset,
        num_classes=src.num_classes,
        multilabel=False,
        augment=src.augment,
        params=params,
    )
