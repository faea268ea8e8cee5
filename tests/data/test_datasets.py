"""Dataset loaders on tiny files written in the exact official formats (no network, no downloads).

Formats: Fashion-MNIST IDX (big-endian magic 2051/2049 + dims, gzip or raw); CIFAR python batches
(Python-2-style protocol-2 pickles of dicts holding numpy arrays, like the official files, inside
the official .tar.gz layout); STL-10 binary (3×96×96 per image, each channel plane column-major,
labels 1..10); image folders of PNGs.
"""

import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from synccp.data import DatasetError, ImageDataset, cifar, fashion_mnist, image_folder, load_dataset
from synccp.data.datasets import channel_stats, resize_images
from synccp.data.download import gunzip_sha256

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """No network, a private cache, no inherited data root."""
    monkeypatch.setenv("SYNCCP_OFFLINE", "1")
    monkeypatch.setenv("SYNCCP_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SYNCCP_DATA", raising=False)


# ---------------------------------------------------------------- format writers

def write_idx(path, magic, array, *, gz=True):
    """An IDX file: big-endian magic, one big-endian uint32 per dim, row-major uint8 data."""
    header = struct.pack(f">I{array.ndim}I", magic, *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def write_fashion_mnist(root, *, n_train=6, n_test=4, gz=True, seed=0):
    """The four Fashion-MNIST files (28×28) in `root`; returns {split: (images, labels)}."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, prefix, count in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, count, dtype=np.uint8)
        suffix = ".gz" if gz else ""
        write_idx(root / f"{prefix}-images-idx3-ubyte{suffix}", 2051, images, gz=gz)
        write_idx(root / f"{prefix}-labels-idx1-ubyte{suffix}", 2049, labels, gz=gz)
        arrays[split] = (images, labels)
    return arrays


def _py2_str(data: bytes) -> bytes:
    """A Python 2 `str` as cPickle writes it (SHORT_BINSTRING / BINSTRING)."""
    if len(data) < 256:
        return b"U" + bytes([len(data)]) + data
    return b"T" + struct.pack("<i", len(data)) + data


def _py2_int(value: int) -> bytes:
    """BININT1 / BININT2 / BININT, the smallest that fits, as cPickle chose."""
    if 0 <= value < 256:
        return b"K" + bytes([value])
    if 0 <= value < 65536:
        return b"M" + struct.pack("<H", value)
    return b"J" + struct.pack("<i", value)


def _py2_ndarray(array: np.ndarray) -> bytes:
    """A uint8 numpy array pickled the way numpy on Python 2 did (`_reconstruct` + BUILD state)."""
    shape = b"(" + b"".join(_py2_int(d) for d in array.shape) + b"t"
    dtype = (b"cnumpy\ndtype\n" + _py2_str(b"u1") + _py2_int(0) + _py2_int(1) + b"\x87R"
             + b"(" + _py2_int(3) + _py2_str(b"|") + b"NNN" + _py2_int(-1) + _py2_int(-1)
             + _py2_int(0) + b"tb")
    return (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + _py2_int(0) + b"\x85"
            + _py2_str(b"b") + b"\x87R" + b"(" + _py2_int(1) + shape + dtype + b"\x89"
            + _py2_str(array.tobytes()) + b"tb")


def py2_pickle(batch: dict) -> bytes:
    """A protocol-2 pickle of a dict of str / list / uint8-array values, as Python 2 wrote it."""
    out = b"\x80\x02}("
    for key, value in batch.items():
        out += _py2_str(key.encode())
        if isinstance(value, np.ndarray):
            out += _py2_ndarray(value)
        elif isinstance(value, list):
            items = (_py2_str(v.encode()) if isinstance(v, str) else _py2_int(v) for v in value)
            out += b"](" + b"".join(items) + b"e"
        else:
            out += _py2_str(value.encode())
    return out + b"u."


def cifar_batch(n, *, num_classes, seed, label_key="labels"):
    """A CIFAR batch dict: `data` uint8 (n, 3072) planes R, G, B, labels as a list of int."""
    rng = np.random.default_rng(seed)
    return {"batch_label": f"batch {seed}",
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            label_key: [int(v) for v in rng.integers(0, num_classes, n)],
            "filenames": [f"img_{i}.png" for i in range(n)]}


def write_tar_gz(path, members: dict):
    """A .tar.gz with `members` {name: bytes}."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def stl_image(seed):
    """A non-symmetric 3×96×96 image (row and column gradients differ, so a transpose shows)."""
    y, x = np.mgrid[0:96, 0:96]
    return np.stack([(y * 2 + x * 5 + c * 40 + seed * 11) % 256 for c in range(3)]).astype(np.uint8)


def stl_bytes(images):
    """STL-10 `*_X.bin` bytes: per image, per channel, the plane in column-major order."""
    return b"".join(np.ascontiguousarray(img.transpose(0, 2, 1)).tobytes() for img in images)


def write_stl10(directory, *, n_train=3, n_test=2, n_unlabeled=2):
    """stl10_binary/ files in `directory`; returns {part: (images (N,3,96,96), labels 1..10)}."""
    directory.mkdir(parents=True, exist_ok=True)
    parts, seed = {}, 0
    for part, count in (("train", n_train), ("test", n_test), ("unlabeled", n_unlabeled)):
        images = np.stack([stl_image(seed + i) for i in range(count)])
        seed += count
        (directory / f"{part}_X.bin").write_bytes(stl_bytes(images))
        labels = (np.arange(count) * 3 % 10 + 1).astype(np.uint8)
        if part != "unlabeled":
            (directory / f"{part}_y.bin").write_bytes(labels.tobytes())
        parts[part] = (images, labels)
    return parts


def write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


# ---------------------------------------------------------------- Fashion-MNIST

@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_reads_idx_pixels_and_labels(tmp_path, gz):
    arrays = write_fashion_mnist(tmp_path / "fm", gz=gz)
    for split in ("train", "test"):
        data = load_dataset("fashion_mnist", split, root=str(tmp_path / "fm"))
        images, labels = arrays[split]
        assert data.images.dtype == torch.uint8 and data.images.shape == (len(images), 1, 28, 28)
        assert data.labels.dtype == torch.int64
        assert torch.equal(data.images[:, 0], torch.from_numpy(images))
        assert data.labels.tolist() == labels.tolist()
        assert (data.num_classes, data.mean, data.std, data.name) == \
            (10, (0.2860,), (0.3530,), "fashion_mnist")


def test_fashion_mnist_real_debian_files_or_fixture(tmp_path, monkeypatch):
    """Real Debian Fashion-MNIST if installed (counts, size, content SHA-256), else a fixture."""
    if (DEBIAN_FASHION_MNIST / "t10k-images-idx3-ubyte.gz").is_file():
        root, counts = DEBIAN_FASHION_MNIST, {"train": 60000, "test": 10000}
        for stem, digest in fashion_mnist.CONTENT_SHA256.items():
            assert gunzip_sha256(DEBIAN_FASHION_MNIST / f"{stem}.gz") == digest
    else:
        root, counts = tmp_path / "fm", {"train": 6, "test": 4}
        write_fashion_mnist(root)
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIRS", (str(root),))
    for split, count in counts.items():
        data = load_dataset("fashion_mnist", split)
        assert data.images.shape == (count, 1, 28, 28) and data.num_classes == 10
        assert 0 <= data.labels.min() and data.labels.max() <= 9
    if counts["test"] == 10000:
        assert torch.bincount(data.labels).tolist() == [1000] * 10


def test_fashion_mnist_search_order(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIRS", ())
    first = write_fashion_mnist(tmp_path / "explicit", seed=1)
    second = write_fashion_mnist(tmp_path / "env" / "fashion_mnist", n_train=5, seed=2)
    monkeypatch.setenv("SYNCCP_DATA", str(tmp_path / "env"))
    from_env = load_dataset("fashion_mnist", "train")              # $SYNCCP_DATA/fashion_mnist
    assert torch.equal(from_env.images[:, 0], torch.from_numpy(second["train"][0]))
    from_root = load_dataset("fashion_mnist", "train", root=str(tmp_path / "explicit"))
    assert torch.equal(from_root.images[:, 0], torch.from_numpy(first["train"][0]))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="not found in data.root") as err:
        load_dataset("fashion_mnist", "train", root=str(empty))    # root given: no fallback
    assert str(empty) in str(err.value)


def test_fashion_mnist_missing_everywhere_says_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIRS", ())
    with pytest.raises(DatasetError) as err:
        load_dataset("fashion_mnist", "test")
    message = str(err.value)
    assert "t10k-images-idx3-ubyte" in message and "SYNCCP_OFFLINE" in message
    assert "apt-get install dataset-fashion-mnist" in message and "data.root" in message


def test_fashion_mnist_missing_labels_file_is_named(tmp_path):
    write_fashion_mnist(tmp_path / "fm")
    (tmp_path / "fm" / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetError, match="train-labels-idx1-ubyte"):
        load_dataset("fashion_mnist", "train", root=str(tmp_path / "fm"))


def test_fashion_mnist_truncated_gz_names_file(tmp_path):
    write_fashion_mnist(tmp_path / "fm")
    path = tmp_path / "fm" / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte.gz: cannot read"):
        load_dataset("fashion_mnist", "train", root=str(tmp_path / "fm"))


def test_fashion_mnist_wrong_magic_names_file(tmp_path):
    write_fashion_mnist(tmp_path / "fm")
    labels = tmp_path / "fm" / "t10k-labels-idx1-ubyte.gz"
    write_idx(labels, 2051, np.zeros(4, dtype=np.uint8))        # images magic on a labels file
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte.gz: IDX magic number is 2051"):
        load_dataset("fashion_mnist", "test", root=str(tmp_path / "fm"))


def test_fashion_mnist_byte_count_mismatch_names_file(tmp_path):
    write_fashion_mnist(tmp_path / "fm", gz=False)
    path = tmp_path / "fm" / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(DatasetError, match="t10k-images-idx3-ubyte: .* bytes, but its IDX dims"):
        load_dataset("fashion_mnist", "test", root=str(tmp_path / "fm"))


def test_fashion_mnist_download_verifies_checksums(tmp_path, monkeypatch):
    """Download path on a file:// mirror: verified files land in the cache, bad ones never do."""
    mirror = tmp_path / "mirror"
    arrays = write_fashion_mnist(mirror)
    stems = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    md5 = {s: hashlib.md5((mirror / f"{s}.gz").read_bytes()).hexdigest() for s in stems}
    content = {s: gunzip_sha256(mirror / f"{s}.gz") for s in stems}
    monkeypatch.delenv("SYNCCP_OFFLINE")
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIRS", ())
    monkeypatch.setattr(fashion_mnist, "URLS", (mirror.as_uri() + "/",))
    monkeypatch.setattr(fashion_mnist, "GZ_MD5", {**md5, stems[0]: "0" * 32})
    monkeypatch.setattr(fashion_mnist, "CONTENT_SHA256", content)
    with pytest.raises(DatasetError, match="md5 mismatch"):
        load_dataset("fashion_mnist", "test")
    cache = tmp_path / "cache" / "fashion_mnist"
    assert not any(p.name.startswith("t10k-images") for p in cache.iterdir())
    monkeypatch.setattr(fashion_mnist, "GZ_MD5", md5)
    data = load_dataset("fashion_mnist", "test")
    assert torch.equal(data.images[:, 0], torch.from_numpy(arrays["test"][0]))
    assert sorted(p.name for p in cache.iterdir()) == [f"{s}.gz" for s in stems]


# ---------------------------------------------------------------- CIFAR

def _cifar10_members(n=2):
    batches = {f"data_batch_{i}": cifar_batch(n, num_classes=10, seed=i) for i in range(1, 6)}
    batches["test_batch"] = cifar_batch(3, num_classes=10, seed=9)
    return batches


def _expected(batches, names, label_key="labels"):
    data = np.concatenate([batches[n]["data"] for n in names])
    labels = sum((batches[n][label_key] for n in names), [])
    return data, labels


def test_cifar10_from_official_tar_gz_and_folder(tmp_path):
    batches = _cifar10_members()
    members = {f"cifar-10-batches-py/{name}": py2_pickle(b) for name, b in batches.items()}
    write_tar_gz(tmp_path / "tar" / "cifar-10-python.tar.gz", members)
    for name, raw in members.items():
        (tmp_path / "dir" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "dir" / name).write_bytes(raw)
    train_names = [f"data_batch_{i}" for i in range(1, 6)]
    for root in (tmp_path / "tar", tmp_path / "dir"):
        for split, names in (("train", train_names), ("test", ["test_batch"])):
            data = load_dataset("cifar10", split, root=str(root))
            flat, labels = _expected(batches, names)
            assert data.images.shape == (len(flat), 3, 32, 32) and data.images.dtype == torch.uint8
            # official layout: 1024 R, then 1024 G, then 1024 B, each plane row-major 32×32
            i, c, y, x = len(flat) - 1, 2, 5, 17
            assert data.images[i, c, y, x].item() == flat[i, c * 1024 + y * 32 + x]
            assert torch.equal(data.images.reshape(len(flat), -1), torch.from_numpy(flat))
            assert data.labels.tolist() == labels and data.labels.dtype == torch.int64
            assert data.mean == (0.4914, 0.4822, 0.4465) and data.num_classes == 10


def test_cifar100_fine_labels_python3_pickles(tmp_path):
    """CIFAR-100 members re-pickled by Python 3 (protocol 2 writes bytes via _codecs.encode)."""
    members = {}
    for split, seed in (("train", 1), ("test", 2)):
        batch = cifar_batch(4, num_classes=100, seed=seed, label_key="fine_labels")
        batch["coarse_labels"] = [0, 1, 2, 3]
        members[split] = {k.encode(): v for k, v in batch.items()}
    write_tar_gz(tmp_path / "cifar-100-python.tar.gz",
                 {f"cifar-100-python/{s}": pickle.dumps(b, protocol=2) for s, b in members.items()})
    data = load_dataset("cifar100", "train", root=str(tmp_path), image_size=16)
    assert data.images.shape == (4, 3, 16, 16) and data.num_classes == 100
    assert data.labels.tolist() == members["train"][b"fine_labels"]


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar_parse_batch_across_pickle_protocols(protocol):
    batch = cifar_batch(3, num_classes=10, seed=3)
    images, labels = cifar.parse_batch(pickle.dumps(batch, protocol=protocol), source="x",
                                       label_key="labels", num_classes=10)
    assert torch.equal(images.reshape(3, -1), torch.from_numpy(batch["data"]))
    assert labels.tolist() == batch["labels"]


class _Exploit:
    def __reduce__(self):
        return (os.getcwd, ())


def test_cifar_refuses_unsafe_pickle_and_names_member(tmp_path):
    batches = _cifar10_members()
    members = {f"cifar-10-batches-py/{n}": py2_pickle(b) for n, b in batches.items()}
    members["cifar-10-batches-py/test_batch"] = pickle.dumps({"data": _Exploit()}, protocol=2)
    write_tar_gz(tmp_path / "cifar-10-python.tar.gz", members)
    with pytest.raises(DatasetError, match=r"test_batch: not a CIFAR python batch.*refusing"):
        load_dataset("cifar10", "test", root=str(tmp_path))


def test_cifar_truncated_archive_and_missing_member(tmp_path):
    batches = _cifar10_members()
    raw = write_tar_gz(tmp_path / "a" / "cifar-10-python.tar.gz",
                       {f"cifar-10-batches-py/{n}": py2_pickle(b) for n, b in batches.items()})
    raw.write_bytes(raw.read_bytes()[: raw.stat().st_size // 2])
    with pytest.raises(DatasetError, match="cifar-10-python.tar.gz: cannot read the archive"):
        load_dataset("cifar10", "train", root=str(tmp_path / "a"))
    folder = tmp_path / "b" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in ("data_batch_1", "data_batch_2", "test_batch"):
        (folder / name).write_bytes(py2_pickle(batches[name]))
    with pytest.raises(DatasetError, match="cifar-10-batches-py: missing data_batch_3"):
        load_dataset("cifar10", "train", root=str(tmp_path / "b"))


def test_cifar_not_found_with_offline_download_says_how(tmp_path):
    with pytest.raises(DatasetError) as err:
        load_dataset("cifar10", "test")
    assert "cifar-10-python.tar.gz" in str(err.value) and "c58f30108f718f92721af3b95e74349a" \
        in str(err.value)


# ---------------------------------------------------------------- STL-10

def test_stl10_column_major_transpose_labels_and_splits(tmp_path):
    parts = write_stl10(tmp_path / "stl10_binary")
    train = load_dataset("stl10", "train", root=str(tmp_path))
    images, labels = parts["train"]
    assert train.images.shape == (3, 3, 96, 96) and train.images.dtype == torch.uint8
    assert torch.equal(train.images, torch.from_numpy(images))
    # the file stores pixel (row y, column x) of channel c at byte c*9216 + x*96 + y
    raw = (tmp_path / "stl10_binary" / "train_X.bin").read_bytes()
    c, y, x = 1, 3, 70
    assert train.images[0, c, y, x].item() == raw[c * 9216 + x * 96 + y] == images[0, c, y, x]
    assert train.images[0, c, y, x] != train.images[0, c, x, y]          # non-symmetric fixture
    assert train.labels.tolist() == (labels.astype(int) - 1).tolist()
    unlabeled = load_dataset("stl10", "unlabeled", root=str(tmp_path))
    assert unlabeled.labels.tolist() == [-1, -1]
    both = load_dataset("stl10", "train+unlabeled", root=str(tmp_path))
    assert both.images.shape[0] == 5 and both.labels[3:].tolist() == [-1, -1]
    assert torch.equal(both.images[3:], unlabeled.images)
    test = load_dataset("stl10", "test", root=str(tmp_path), image_size=32)
    assert test.images.shape == (2, 3, 32, 32) and test.num_classes == 10


def test_stl10_from_tar_gz_matches_folder(tmp_path):
    write_stl10(tmp_path / "src" / "stl10_binary")
    folder = load_dataset("stl10", "train+unlabeled", root=str(tmp_path / "src"))
    members = {f"stl10_binary/{p.name}": p.read_bytes()
               for p in sorted((tmp_path / "src" / "stl10_binary").iterdir())}
    write_tar_gz(tmp_path / "stl10_binary.tar.gz", members)
    archive = load_dataset("stl10", "train+unlabeled", root=str(tmp_path))
    assert torch.equal(archive.images, folder.images)
    assert torch.equal(archive.labels, folder.labels)


def test_stl10_unlabeled_file_untouched_unless_asked_and_errors_name_files(tmp_path):
    write_stl10(tmp_path / "stl10_binary")
    unlabeled = tmp_path / "stl10_binary" / "unlabeled_X.bin"
    unlabeled.write_bytes(unlabeled.read_bytes()[:-5])
    assert load_dataset("stl10", "train", root=str(tmp_path)).images.shape[0] == 3
    with pytest.raises(DatasetError, match="unlabeled_X.bin: .* not a multiple of 27648"):
        load_dataset("stl10", "unlabeled", root=str(tmp_path))
    (tmp_path / "stl10_binary" / "test_y.bin").write_bytes(bytes([1, 11]))
    with pytest.raises(DatasetError, match=r"test_y.bin: label 11 is outside \[1, 10\]"):
        load_dataset("stl10", "test", root=str(tmp_path))
    (tmp_path / "stl10_binary" / "train_y.bin").unlink()
    with pytest.raises(DatasetError, match="train_y.bin: missing"):
        load_dataset("stl10", "train", root=str(tmp_path))


# ---------------------------------------------------------------- image folders

def _rgb(seed, size=(8, 8)):
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def test_image_folder_decodes_labels_stats_and_caches(tmp_path, monkeypatch):
    root = tmp_path / "folder"
    pixels = {}
    for split, count in (("train", 2), ("test", 1)):
        for cls in ("dog", "cat"):
            for i in range(count):
                pixels[(split, cls, i)] = _rgb(len(pixels))
                write_png(root / split / cls / f"{i}.png", pixels[(split, cls, i)])
    data = load_dataset("image_folder", "train", root=str(root), image_size=8)
    assert data.images.shape == (4, 3, 8, 8) and data.images.dtype == torch.uint8
    assert data.labels.tolist() == [0, 0, 1, 1] and data.num_classes == 2   # cat=0, dog=1
    dog = torch.from_numpy(pixels[("train", "dog", 0)]).permute(2, 0, 1)    # (3, 8, 8)
    assert torch.equal(data.images[2], dog)
    assert data.mean == pytest.approx(channel_stats(data.images)[0])
    test = load_dataset("image_folder", "test", root=str(root), image_size=8)
    assert test.labels.tolist() == [0, 1]
    cached = list((tmp_path / "cache" / "image_folder").glob("*.pt"))
    assert len(cached) == 2 and not list(cached[0].parent.glob(".*"))     # no temp files left
    decoded = []
    decode = image_folder._decode
    monkeypatch.setattr(image_folder, "_decode", lambda *a: decoded.append(a[0]) or decode(*a))
    again = load_dataset("image_folder", "train", root=str(root), image_size=8)
    assert torch.equal(again.images, data.images) and decoded == []      # served from the cache
    os.utime(root / "test" / "cat" / "0.png", ns=(1, 1))                  # any change rebuilds
    load_dataset("image_folder", "train", root=str(root), image_size=8)
    assert len(decoded) == 4


def test_image_folder_grayscale_resize_and_flat_layout(tmp_path):
    for cls in ("a", "b", "c"):
        gray = np.random.default_rng(ord(cls)).integers(0, 256, (12, 20), dtype=np.uint8)
        write_png(tmp_path / "flat" / cls / "x.png", gray)
    data = load_dataset("image_folder", "train", root=str(tmp_path / "flat"), image_size=6)
    assert data.images.shape == (3, 1, 6, 6) and len(data.mean) == 1
    assert data.labels.tolist() == [0, 1, 2]
    with pytest.raises(DatasetError, match="flat layout"):
        load_dataset("image_folder", "test", root=str(tmp_path / "flat"))
    default = load_dataset("image_folder", "train", root=str(tmp_path / "flat"))
    assert default.images.shape[-2:] == (64, 64)


def test_image_folder_corrupt_image_names_file(tmp_path):
    write_png(tmp_path / "f" / "train" / "a" / "ok.png", _rgb(0))
    bad = tmp_path / "f" / "train" / "a" / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(DatasetError, match=r"bad.png: cannot (read|decode) image"):
        load_dataset("image_folder", "train", root=str(tmp_path / "f"))


# ---------------------------------------------------------------- dispatcher and helpers

@pytest.mark.parametrize("kwargs, pattern", [
    (dict(name="imagenet21k", split="train"), "data.name must be one of"),
    (dict(name="imagenet", split="train"), "data.name='imagenet' is streamed from disk"),
    (dict(name="cifar10", split="unlabeled"), "split of data.name='cifar10' must be one of"),
    (dict(name="stl10", split="train", image_size=0), "data.image_size must be a positive"),
    (dict(name="image_folder", split="train"), "data.root must name the image folder"),
])
def test_load_dataset_rejects_bad_arguments(kwargs, pattern):
    with pytest.raises(DatasetError, match=pattern):
        load_dataset(kwargs.pop("name"), kwargs.pop("split"), **kwargs)


def test_image_dataset_validates_and_resize_keeps_constants():
    with pytest.raises(DatasetError, match="uint8"):
        ImageDataset(images=torch.zeros(2, 1, 4, 4), labels=torch.zeros(2, dtype=torch.int64),
                     num_classes=1, mean=(0.5,), std=(0.5,), name="x")
    images = torch.full((3, 2, 7, 7), 200, dtype=torch.uint8)
    for size in (4, 12):
        out = resize_images(images, size)
        assert out.shape == (3, 2, size, size) and out.dtype == torch.uint8
        assert bool((out == 200).all())
    assert len(ImageDataset(images=images, labels=torch.full((3,), -1), num_classes=0,
                            mean=(0.1, 0.2), std=(0.3, 0.4), name="x")) == 3
