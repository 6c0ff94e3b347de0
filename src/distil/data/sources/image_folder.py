"""A folder of images, one sub-folder per class (the sub-folder's name is the class name).

Layout: ``path/<class>/<image>``, or ``path/train/<class>/...`` and ``path/test/<class>/...`` when
both ``train`` and ``test`` exist (without them load_dataset carves the test split). Images are
read with Pillow (png, jpg, jpeg, bmp, gif; other files and hidden entries are ignored), converted
to grayscale or RGB and resized to one size. Classes are ordered by name, so labels do not depend
on the order the file system lists them in.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from distil.data.raw import RawData
from distil.data.registry import register_dataset, required_path
from distil.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
#: channels -> Pillow mode
MODES = {1: "L", 3: "RGB"}
LAYOUT = "a directory with one sub-folder of images per class (optionally inside train/ and test/)"


@register_dataset("folder", "images in one sub-folder per class, optional train/ and test/ (options: channels 1|3, image_size)")
def load_image_folder(path: Path | None, *, channels: int = 1, image_size: int | None = None) -> RawData:
    """Read every image under ``path`` as ``channels`` channels of ``image_size``² pixels.

    ``image_size`` defaults to the size of the first image (H×W, need not be square); every image is
    resized to it (bilinear).
    """
    root = required_path("folder", path, LAYOUT)
    if channels not in MODES or isinstance(channels, bool):
        raise DataError(f"folder option channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1):
        raise DataError(f"folder option image_size must be a positive int (pixels per side), got {image_size!r}")
    train_dir, test_dir = _split_dirs(root)
    classes = _class_folders(train_dir)
    train_files, train_y = _image_files(train_dir, classes)
    size = (image_size, image_size) if image_size is not None else _size_of(train_files[0])
    mode = MODES[channels]
    test_x = test_y = None
    if test_dir is not None:
        unknown = sorted(set(_class_folders(test_dir)) - set(classes))
        if unknown:
            raise DataError(f"{test_dir} has class folders {unknown} that {train_dir} lacks; train has: {', '.join(classes)}")
        test_files, test_y = _image_files(test_dir, classes, only_present=True)
        test_x = read_images(test_files, mode, size)
    return RawData(
        train_x=read_images(train_files, mode, size),
        train_y=train_y,
        test_x=test_x,
        test_y=test_y,
        class_names=tuple(classes),
        input_shape=(channels, *size),
        source=str(root),
    )


def _split_dirs(root: Path) -> tuple[Path, Path | None]:
    if not root.is_dir():
        raise DataError(f"folder dataset path {root} is not a directory; expected {LAYOUT}")
    train, test = root / "train", root / "test"
    if train.is_dir() and test.is_dir():
        return train, test
    if train.is_dir() or test.is_dir():
        # A lone train/ would otherwise be read as a class named "train": surely not what was meant.
        lone, other = (train, test) if train.is_dir() else (test, train)
        raise DataError(f"{root} has {lone.name}/ but no {other.name}/; give both (the splits) or neither (sub-folders are classes)")
    return root, None


def _class_folders(directory: Path) -> list[str]:
    classes = sorted(p.name for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{directory} has no class sub-folders; expected {LAYOUT}")
    return classes


def _image_files(directory: Path, classes: list[str], only_present: bool = False) -> tuple[list[Path], np.ndarray]:
    """Image files of each class folder in name order, and their labels (class indices)."""
    files: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        folder = directory / name
        if only_present and not folder.is_dir():
            continue  # a test split may lack a class
        images = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise DataError(f"class folder {folder} has no images ({', '.join(IMAGE_SUFFIXES)})")
        files += images
        labels += [label] * len(images)
    return files, np.asarray(labels, dtype=np.int64)


def _open(file: Path):  # -> PIL.Image.Image, imported lazily
    from PIL import Image

    image = None
    try:
        image = Image.open(file)
        image.load()  # decode now, so a truncated file fails here with its name
        return image
    except (OSError, ValueError, Image.DecompressionBombError) as error:  # UnidentifiedImageError is an OSError
        if image is not None:
            image.close()
        raise DataError(f"{file}: cannot be read as an image ({error})") from None


def _size_of(file: Path) -> tuple[int, int]:
    with _open(file) as image:
        width, height = image.size
    return height, width


def read_images(files: list[Path], mode: str, size: tuple[int, int]) -> np.ndarray:
    """uint8 (N, C, H, W) array of ``files`` converted to ``mode`` and resized to ``size`` (H, W)."""
    from PIL import Image

    height, width = size
    out = np.empty((len(files), height, width, len(mode)), dtype=np.uint8)
    for i, file in enumerate(files):  # one decode per file is inherent; everything after is batched
        with _open(file) as image:
            converted = image.convert(mode)
            if converted.size != (width, height):
                converted = converted.resize((width, height), Image.Resampling.BILINEAR)
            out[i] = np.asarray(converted).reshape(height, width, len(mode))
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))
