"""The built-in datasets. Importing this package registers each of them (one module per source)."""

from distil.data.sources import digits, fashion_mnist, image_folder, mnist1d, npz, transfer
from distil.data.text import sources as text

__all__ = ["digits", "fashion_mnist", "image_folder", "mnist1d", "npz", "text", "transfer"]
