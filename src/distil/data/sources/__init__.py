"""The built-in datasets. Importing this package registers each of them (one module per source)."""

from distil.data.sources import digits, fashion_mnist, image_folder, mnist1d, npz, transfer
from distil.data.audio import spoken_words
from distil.data.text import sources as text
from distil.data.text import tagging_sources as tagging

__all__ = ["digits", "fashion_mnist", "image_folder", "mnist1d", "npz", "spoken_words", "tagging", "text", "transfer"]
