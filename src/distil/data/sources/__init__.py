"""The built-in datasets. Importing this package registers each of them (one module per source)."""

from distil.data.sources import digits, fashion_mnist, image_folder, mnist1d, npz, transfer

__all__ = ["digits", "fashion_mnist", "image_folder", "mnist1d", "npz", "transfer"]
