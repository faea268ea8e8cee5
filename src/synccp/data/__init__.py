"""Datasets as uint8 tensors in memory: Fashion-MNIST, CIFAR-10/100, STL-10 and image folders.

`load_dataset(name, split, root=..., image_size=...)` is the entry point; other modules of this
package (loaders, augmentations, views, downloads) are imported by their full path.
"""

from synccp.data.datasets import DatasetError, ImageDataset, load_dataset

__all__ = ["DatasetError", "ImageDataset", "load_dataset"]
