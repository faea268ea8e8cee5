"""ImageNet-1k and ImageNet-100 folder layouts (streamed from disk, see `synccp.data.stream`).

ImageNet: the official ILSVRC-2012 training folder `train/<wnid>/*.JPEG` (1000 WordNet ids) and
the validation images sorted into `val/<wnid>/` (the usual layout; the official flat `val/` with
its ground-truth file is not read). The folder is `data.root`, else `$SYNCCP_DATA/imagenet`, else
the cache directory's `imagenet/` (datasets.candidate_dirs).

ImageNet-100: the same folder (or one holding only those classes) restricted to the 100 classes
of the CMC class list that solo-learn ships (`solo/data/dataset_subset/imagenet100_classes.txt`);
labels are the classes' ranks in sorted wnid order, as torchvision's ImageFolder gives over a
pre-made ImageNet-100 folder.
"""

from __future__ import annotations

from pathlib import Path

from synccp.data.datasets import DatasetError, candidate_dirs, find_first, searched

# The usual ImageNet channel statistics (torchvision, solo-learn), in [0, 1].
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
DEFAULT_IMAGE_SIZE = 224
SPLIT_DIRS = {"train": "train", "test": "val"}  # synccp split -> ImageNet folder
NUM_CLASSES = {"imagenet": 1000, "imagenet100": 100}

IMAGENET100_CLASSES = tuple(sorted("""
n02869837 n01749939 n02488291 n02107142 n13037406 n02091831 n04517823 n04589890 n03062245 n01773797
n01735189 n07831146 n07753275 n03085013 n04485082 n02105505 n01983481 n02788148 n03530642 n04435653
n02086910 n02859443 n13040303 n03594734 n02085620 n02099849 n01558993 n04493381 n02109047 n04111531
n02877765 n04429376 n02009229 n01978455 n02106550 n01820546 n01692333 n07714571 n02974003 n02114855
n03785016 n03764736 n03775546 n02087046 n07836838 n04099969 n04592741 n03891251 n02701002 n03379051
n02259212 n07715103 n03947888 n04026417 n02326432 n03637318 n01980166 n02113799 n02086240 n03903868
n02483362 n04127249 n02089973 n03017168 n02093428 n02804414 n02396427 n04418357 n02172182 n01729322
n02113978 n03787032 n02089867 n02119022 n03777754 n04238763 n02231487 n03032252 n02138441 n02104029
n03837869 n03494278 n04136333 n03794056 n03492542 n02018207 n04067472 n03930630 n03584829 n02123045
n04229816 n02100583 n03642806 n04336792 n03259280 n02116738 n02108089 n03424325 n01855672 n02090622
""".split()))
assert len(IMAGENET100_CLASSES) == 100


def imagenet_root(root: str | None) -> Path:
    """The ImageNet folder: the first candidate directory that has a `train/` sub-directory."""
    dirs = candidate_dirs("imagenet", root)
    found = find_first(dirs, lambda d: d if (d / "train").is_dir() else None)
    if found is None:
        raise DatasetError(
            f"ImageNet: no folder with train/<wnid>/ found (looked in {searched(dirs)}); "
            "set data.root to the directory holding train/ and val/"
        )
    return found


def imagenet_classes(name: str, train_dir: Path) -> list[str]:
    """The class directories of `name` ("imagenet" | "imagenet100") under `train_dir`, sorted.

    ImageNet takes every wnid directory present (a folder with fewer than 1000 is accepted:
    e.g. a class subset made by hand); ImageNet-100 needs all 100 listed wnids."""
    present = sorted(
        p.name for p in train_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
    )
    if name == "imagenet":
        if not present:
            raise DatasetError(
                f"{train_dir}: no class directories; expected {train_dir}/<wnid>/*.JPEG"
            )
        return present
    missing = sorted(set(IMAGENET100_CLASSES) - set(present))
    if missing:
        raise DatasetError(
            f"{train_dir}: data.name='imagenet100' needs the 100 classes of solo-learn's "
            f"list; {len(missing)} are missing, e.g. {', '.join(missing[:5])}"
        )
    return list(IMAGENET100_CLASSES)
