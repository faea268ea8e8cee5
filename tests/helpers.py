"""Test helpers: small datasets in official formats and seconds-long run configs."""

import gzip
import struct

import numpy as np


def write_idx_fashion_mnist(root, *, n_train=96, n_test=48, size=16, seed=0):
    """Write the four Fashion-MNIST IDX .gz files (magic 2051/2049, big-endian dims) into `root`.

    Images are class-dependent patterns plus noise, so an encoder has something to learn."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for prefix, count in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, count).astype(np.uint8)
        yy, xx = np.mgrid[0:size, 0:size]
        base = np.stack(
            [((xx * (c % 3 + 1) + yy * (c // 3 + 1)) % size) * (255 // size) for c in range(10)]
        )
        images = np.clip(base[labels] + rng.integers(0, 40, (count, size, size)), 0, 255).astype(
            np.uint8
        )
        with gzip.open(root / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
            f.write(struct.pack(">IIII", 2051, count, size, size) + images.tobytes())
        with gzip.open(root / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(struct.pack(">II", 2049, count) + labels.tobytes())
    return root


TINY_METHOD = {"method.queue_size": 64, "method.proj_hidden_dim": 32, "method.proj_output_dim": 16}


def method_keys(method, **values):
    """`values` ("method.<key>" -> value) restricted to the keys `method` has, plus method.name:
    for tests run over several methods (a key of another method is an error)."""
    from synccp.methods import method_defaults

    own = method_defaults(method)
    kept = {key: value for key, value in values.items() if key.split(".", 1)[1] in own}
    return {"method.name": f'"{method}"', **kept}


def tiny_overrides(root, **extra):
    """`--set` overrides for a seconds-long run on the fixture data; of `TINY_METHOD`, only the
    keys the run's method has (keys of another method are an error)."""
    from synccp.methods import method_defaults

    values = {
        "data.root": f'"{root}"',
        # the recipe the tests (and tests/fingerprints.json) were written for, whatever the demo's
        "method.name": '"byol"',
        "train.lr": 1.0,
        "train.weight_decay": 1e-5,
        "model.width": 4,
        "train.batch_size": 16,
        "train.epochs": 2,
        "train.log_every": 2,
        "train.progress": "false",
        "train.warmup_epochs": 0.5,
        "sparsity.update_every": 2,
        "sparsity.start_epoch": 0,
        "sparsity.end_epoch": 1.5,
        "eval.linear_epochs": 2,
        "eval.knn_k": 5,
    }
    name = str(extra.get("method.name", values["method.name"])).strip('"')
    own = method_defaults(name)
    values.update({key: value for key, value in TINY_METHOD.items() if key.split(".")[1] in own})
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]


def write_image_folder(
    root, classes, *, per_class=4, size=(20, 14), split="train", ext=".JPEG", corrupt=(), seed=0
):
    """Write `root/split/<class>/<i>ext` real image files (JPEG or PNG by `ext`) of class-dependent
    colours plus noise; names in `corrupt` (e.g. "cls/1.JPEG") get truncated, undecodable bytes.
    Returns the paths written, in class-then-name order."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = []
    for c, name in enumerate(classes):
        directory = root / split / name
        directory.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            colour = np.array([(37 * c) % 256, (91 * c + 40) % 256, (53 * i) % 256])
            noise = rng.integers(0, 60, (size[1], size[0], 3))
            pixels = np.clip(colour + noise, 0, 255).astype(np.uint8)
            path = directory / f"{i:04d}{ext}"
            Image.fromarray(pixels).save(path, format="PNG" if ext.lower() == ".png" else "JPEG")
            if f"{name}/{path.name}" in corrupt:
                path.write_bytes(path.read_bytes()[:40])
            paths.append(path)
    return paths
