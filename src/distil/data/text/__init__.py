"""Text data: a tokenizer.json folder, sentences tokenized into int64 id tensors (cached on disk), and
the registered text sources (``mr``, ``mr_reviews``, ``tweets``, ``text_csv``, ``text_jsonl``,
``text_folder``; :mod:`distil.data.text.sources`, registered by :mod:`distil.data.sources`).

A text loader returns :class:`~distil.data.RawText`; :func:`~distil.data.load_dataset` carves the
splits as for arrays, tokenizes them (:mod:`distil.data.text.build`) and puts a :class:`TextInfo` on
``Dataset.text``.
"""

from distil.data.text.info import TextInfo
from distil.data.text.tokenizer import DEFAULT_MAX_LENGTH, DEFAULT_TOKENIZER, Encoded, TextTokenizer, load_tokenizer

__all__ = ["DEFAULT_MAX_LENGTH", "DEFAULT_TOKENIZER", "Encoded", "TextInfo", "TextTokenizer", "load_tokenizer"]
