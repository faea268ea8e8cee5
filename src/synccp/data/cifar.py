"""CIFAR-10 and CIFAR-100 from the official "python version" archives.

https://www.cs.toronto.edu/~kriz/cifar.html: `cifar-10-python.tar.gz` holds
`cifar-10-batches-py/data_batch_1..5` and `test_batch`; `cifar-100-python.tar.gz` holds
`cifar-100-python/train` and `test`. Each member is a pickled dict with `data` (a uint8 numpy array
(N, 3072): 1024 red, 1024 green, 1024 blue values, each a row-major 32×32 plane) and `labels`
(CIFAR-10) or `fine_labels` (CIFAR-100). Members are read straight from the .tar.gz (nothing is
extracted to disk), or from the already-extracted folder.

The files are pickles, and unpickling can run arbitrary code, so a restricted Unpickler accepts
only the globals numpy arrays need (and a few builtin types); anything else is refused.
"""

from __future__ import annotations

import codecs
import io
import logging
import pickle
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from synccp.data.datasets import (
    DatasetError,
    ImageDataset,
    cache_dir,
    candidate_dirs,
    find_first,
    label_tensor,
    searched,
)
from synccp.data.download import DownloadError, download

logger = logging.getLogger(__name__)

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct
    from numpy._core.numeric import _frombuffer
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct
    from numpy.core.numeric import _frombuffer

_BUILTINS = {"dict": dict, "list": list, "bytes": bytes, "str": str, "int": int}
_SAFE_GLOBALS = {
    **{(module, name): obj for module in ("builtins", "__builtin__")
       for name, obj in _BUILTINS.items()},
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,   # how Python 3 writes bytes in protocol-2 pickles
}


@dataclass(frozen=True)
class CifarVariant:
    """Where one CIFAR variant lives, how its members are named, and its constants."""

    name: str
    archive: str
    folder: str
    members: dict[str, tuple[str, ...]]
    label_key: str
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    url: str
    md5: str      # published on the CIFAR page
    sha256: str   # from third-party checksum lists (Keras, torchvision datapipes); not re-hashed


CIFAR10 = CifarVariant(
    name="cifar10", archive="cifar-10-python.tar.gz", folder="cifar-10-batches-py",
    members={"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
    label_key="labels", num_classes=10,
    mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616),
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    md5="c58f30108f718f92721af3b95e74349a",
    sha256="6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce")
CIFAR100 = CifarVariant(
    name="cifar100", archive="cifar-100-python.tar.gz", folder="cifar-100-python",
    members={"train": ("train",), "test": ("test",)},
    label_key="fine_labels", num_classes=100,
    mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762),
    url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    md5="eb9058c3a382ffc7106e4002c42a8d85",
    sha256="85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7")


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals in `_SAFE_GLOBALS`."""

    def find_class(self, module: str, name: str):
        try:
            return _SAFE_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None


def load_cifar10(split: str, *, root: str | None = None) -> ImageDataset:
    """CIFAR-10 `split` ("train" | "test") as uint8 `(N, 3, 32, 32)` images and labels 0..9."""
    return load_cifar(CIFAR10, split, root=root)


def load_cifar100(split: str, *, root: str | None = None) -> ImageDataset:
    """CIFAR-100 `split` ("train" | "test") as uint8 `(N, 3, 32, 32)` images, fine labels 0..99."""
    return load_cifar(CIFAR100, split, root=root)


def load_cifar(variant: CifarVariant, split: str, *, root: str | None = None) -> ImageDataset:
    """Load `split` of `variant` from its extracted folder or its .tar.gz archive."""
    dirs = candidate_dirs(variant.name, root)
    source = find_first(dirs, lambda d: _locate(variant, d))
    if source is None:
        source = _download_or_explain(variant, dirs, explicit_root=bool(root))
    members = variant.members[split]
    raw = _read_folder(source, members) if source.is_dir() else _read_archive(variant, source,
                                                                             members)
    parts = [parse_batch(raw[m], source=f"{source}/{m}", label_key=variant.label_key,
                         num_classes=variant.num_classes) for m in members]
    images = torch.cat([images for images, _ in parts])    # (N, 3, 32, 32)
    labels = torch.cat([labels for _, labels in parts])    # (N,)
    logger.info("loaded %s %s: %d images from %s", variant.name, split, len(labels), source)
    return ImageDataset(images=images, labels=labels, num_classes=variant.num_classes,
                        mean=variant.mean, std=variant.std, name=variant.name)


def parse_batch(raw: bytes, *, source: str, label_key: str,
                num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Unpickle one CIFAR batch safely; return uint8 `(N, 3, 32, 32)` images and int64 labels."""
    try:
        batch = _RestrictedUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as err:  # any unpickling failure means a corrupt or foreign file
        raise DatasetError(f"{source}: not a CIFAR python batch ({err}); re-download the "
                           "official archive") from err
    if not isinstance(batch, dict):
        raise DatasetError(f"{source}: expected a pickled dict, got {type(batch).__name__}")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or label_key not in batch:
        raise DatasetError(f"{source}: missing field 'data' or {label_key!r} "
                           f"(fields: {sorted(batch)})")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3 * 32 * 32:
        raise DatasetError(f"{source}: field 'data' must be a uint8 array (N, 3072), got "
                           f"{getattr(data, 'dtype', type(data).__name__)} "
                           f"{getattr(data, 'shape', '')}")
    labels = label_tensor(batch[label_key], num_classes=num_classes,
                          source=f"{source} field {label_key!r}")
    if labels.shape[0] != data.shape[0]:
        raise DatasetError(f"{source}: {data.shape[0]} images but {labels.shape[0]} labels")
    images = torch.from_numpy(np.array(data).reshape(-1, 3, 32, 32))    # (N, 3, 32, 32)
    return images, labels


def _locate(variant: CifarVariant, directory: Path) -> Path | None:
    """The extracted folder (preferred) or the archive of `variant` inside `directory`."""
    for candidate in (directory / variant.folder, directory):
        if candidate.is_dir() and any((candidate / m).is_file()
                                      for ms in variant.members.values() for m in ms):
            return candidate
    archive = directory / variant.archive
    return archive if archive.is_file() else None


def _read_folder(folder: Path, members: tuple[str, ...]) -> dict[str, bytes]:
    """Raw bytes of each member file of an extracted CIFAR folder."""
    missing = [m for m in members if not (folder / m).is_file()]
    if missing:
        raise DatasetError(f"{folder}: missing {', '.join(missing)}; extract the complete "
                           "official archive there")
    return {m: (folder / m).read_bytes() for m in members}


def _read_archive(variant: CifarVariant, archive: Path,
                  members: tuple[str, ...]) -> dict[str, bytes]:
    """Raw bytes of `members` read from the .tar.gz in one pass, without extracting."""
    wanted = {f"{variant.folder}/{m}": m for m in members}
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for info in tar:
                name = info.name.removeprefix("./")
                if name in wanted and info.isfile():
                    found[wanted[name]] = tar.extractfile(info).read()
                    if len(found) == len(wanted):
                        break
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise DatasetError(f"{archive}: cannot read the archive ({err}); it is truncated or "
                           f"corrupt — re-download it (md5 {variant.md5})") from err
    missing = [name for name, m in wanted.items() if m not in found]
    if missing:
        raise DatasetError(f"{archive}: has no member {', '.join(missing)}; this is not the "
                           f"official {variant.archive} — re-download it from {variant.url}")
    return found


def _download_or_explain(variant: CifarVariant, dirs: list[Path], explicit_root: bool) -> Path:
    """Download the archive into the cache, or raise a DatasetError saying how to get it."""
    how = (f"download {variant.url} (md5 {variant.md5}) and put {variant.archive} (or the "
           f"extracted {variant.folder}/) in a directory, then set data.root (or $SYNCCP_DATA)")
    if explicit_root:
        raise DatasetError(f"{variant.name}: neither {variant.folder}/ nor {variant.archive} "
                           f"found in data.root (looked in {searched(dirs)}); {how}")
    try:
        return download([variant.url], cache_dir(variant.name) / variant.archive,
                        md5=variant.md5, sha256=variant.sha256)
    except DownloadError as err:
        raise DatasetError(f"{variant.name}: neither {variant.folder}/ nor {variant.archive} "
                           f"found (looked in {searched(dirs)}) and the download failed "
                           f"({err}); {how}") from err
