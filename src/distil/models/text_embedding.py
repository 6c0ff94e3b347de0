"""The token embedding every text student starts with: which ids get a row, and how the rows begin.

Inputs are the teacher tokenizer's int64 ids ``(B, L)``, right-padded with 0 (``x != 0`` is the
mask). Four choices shape the layer (factory kwargs of every text student):

* ``vocab="teacher"``: one row per id of the tokenizer (``vocab_size`` rows; 30,522 for MiniLM).
  ``vocab="data"`` (the default): only ids that occur at least ``min_count`` times in the training
  split (``token_counts``) get a row; every other id shares one UNK row. A buffer ``index``
  (``vocab_size`` int64) maps a tokenizer id to its row, so the model still reads the teacher's ids,
  and the table is ~5× smaller than the tokenizer's on a corpus like MR (6.2k of 30.5k ids occur
  twice in its 4,000 sentences). Row 0 is padding (zero, never trained), row 1 UNK, then the kept ids
  in id order. The buffer is saved with the weights, so a weights file carries its vocabulary.
* ``embedding_init="random"``: N(0, σ²) rows, σ set by the model (0.1 for the LSTMs, CNN and bag of
  embeddings, near Kim's U[-0.25, 0.25]; 0.02 for the transformer, as BERT). ``"teacher"``: the
  teacher's word embeddings (the tensor whose name ends in ``word_embeddings.weight`` in
  ``tokenizer_dir/model.safetensors``) reduced to ``embed_dim`` by PCA — the centred matrix
  ``E - mean(E)`` (all tokenizer rows) times its top ``embed_dim`` principal axes, each
  axis's sign fixed so its largest-magnitude entry is positive (the same numbers on every
  machine) — then the rows of the kept ids picked; the UNK row is the mean of the rows it stands
  for. When ``embed_dim`` ≥ the teacher's width the rows are copied as they are (no centring) and
  padded with zero columns. This is how a student inherits the teacher's lexical knowledge (Tang
  et al., 2019, arXiv:1903.12136, start theirs from word2vec).
* ``freeze_embedding=True``: the table is not trained (``requires_grad=False``).

Row 0 is always zero, whatever the init, and has no gradient (``padding_idx=0``).
"""

from __future__ import annotations

from numbers import Integral
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from distil.errors import ModelError
from distil.models.checks import positive_int

PAD_ID = 0  # the padding id of every token tensor in distil (distil.data.tokens.PAD_ID; data is a sibling layer)
PAD_ROW = 0
UNK_ROW = 1
VOCABS = ("data", "teacher")
INITS = ("random", "teacher")
WEIGHTS_FILE = "model.safetensors"
EMBEDDING_KEY = "word_embeddings.weight"


class TokenEmbedding(nn.Embedding):
    """``nn.Embedding`` over the tokenizer's ids, optionally through an id → row ``index`` buffer.

    With ``index`` (vocab "data"), id ``i`` reads row ``index[i]``; without it, row ``i``. Row 0 is
    the padding row.
    """

    def __init__(self, num_rows: int, dim: int, index: torch.Tensor | None = None) -> None:
        super().__init__(num_rows, dim, padding_idx=PAD_ROW)
        self.index: torch.Tensor | None
        self.register_buffer("index", index)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = self.index[x] if self.index is not None else x
        return F.embedding(rows, self.weight, self.padding_idx)

    def extra_repr(self) -> str:
        vocab = f", ids={self.index.numel()}" if self.index is not None else ""
        return super().extra_repr() + vocab


def text_vocab_size(model: str, vocab_size: Any) -> int:
    """The data's vocabulary size, or a ModelError saying that ``model`` reads token ids."""
    if vocab_size is None:
        raise ModelError(
            f"model {model!r} reads token ids: the data must be text (a tokenized dataset, which gives the model its vocab_size); "
            "for images or signals use mlp, cnn, cnn1d or a resnet"
        )
    return positive_int(model, "vocab_size", vocab_size)


def kept_ids(model: str, token_counts: Any, vocab_size: int, min_count: int) -> torch.Tensor:
    """The ids (sorted, padding excluded) that occur at least ``min_count`` times in ``token_counts``."""
    if token_counts is None:
        raise ModelError(
            f"model {model!r}: vocab 'data' keeps the ids the training split uses, but the data gave no token_counts; "
            "use vocab: teacher (one row per tokenizer id)"
        )
    counts = torch.as_tensor(token_counts)
    if counts.shape != (vocab_size,) or counts.dtype.is_floating_point or counts.dtype == torch.bool:
        raise ModelError(
            f"model {model!r}: token_counts must be an integer tensor of shape ({vocab_size},), got {counts.dtype} {tuple(counts.shape)}"
        )
    keep = counts >= min_count
    keep[PAD_ID] = False
    return keep.nonzero().flatten()


def row_index(kept: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """id → row: padding → 0, a kept id → 2 + its rank among the kept, any other id → 1 (UNK)."""
    index = torch.full((vocab_size,), UNK_ROW, dtype=torch.int64)
    index[PAD_ID] = PAD_ROW
    index[kept] = torch.arange(2, 2 + kept.numel(), dtype=torch.int64)
    return index


def teacher_word_embeddings(model: str, tokenizer_dir: Any) -> torch.Tensor:
    """The teacher's word-embedding matrix ``(V, H)`` (float32) from ``tokenizer_dir/model.safetensors``."""
    from safetensors import SafetensorError, safe_open

    if tokenizer_dir is None:
        raise ModelError(
            f"model {model!r}: embedding_init 'teacher' reads the teacher's word embeddings from the tokenizer's folder, "
            "but the data names no tokenizer folder (tokenizer_dir); use embedding_init: random"
        )
    path = Path(tokenizer_dir) / WEIGHTS_FILE
    if not path.is_file():
        raise ModelError(
            f"model {model!r}: embedding_init 'teacher' needs {path}, which does not exist; expected the teacher's weights next to its tokenizer"
        )
    try:
        with safe_open(str(path), "pt") as f:
            keys = [k for k in f.keys() if k.endswith(EMBEDDING_KEY)]  # noqa: SIM118 - safe_open is not a mapping
            if len(keys) != 1:
                raise ModelError(
                    f"model {model!r}: {path} has {len(keys)} tensors named '*{EMBEDDING_KEY}' ({', '.join(keys) or 'none'}); expected one"
                )
            matrix = f.get_tensor(keys[0])
    except (SafetensorError, OSError) as err:
        raise ModelError(f"model {model!r}: {path} is not a readable safetensors file ({err})") from None
    if matrix.dim() != 2:
        raise ModelError(f"model {model!r}: {path}:{keys[0]} has shape {tuple(matrix.shape)}; expected (vocabulary, width)")
    return matrix.float()


def pca_rows(matrix: torch.Tensor, dim: int) -> torch.Tensor:
    """``matrix`` ``(V, H)`` as ``(V, dim)``: its top-``dim`` principal components, or itself zero-padded if ``dim`` ≥ H.

    PCA in float64: the principal axes ``v_j`` are the top eigenvectors of ``Cᵀ C`` for the centred
    matrix ``C = E - mean(E)`` (the right singular vectors of ``C``; ``eigh`` of the H×H matrix is
    ~6× faster than the SVD of the V×H one), each one's sign chosen so that its largest-magnitude
    entry is positive; component ``j`` of a row is ``C @ v_j``.
    """
    rows, width = matrix.shape
    if dim >= width:
        return torch.cat([matrix, matrix.new_zeros(rows, dim - width)], dim=1)
    centred = (matrix - matrix.mean(0)).double()
    _, vectors = torch.linalg.eigh(centred.T @ centred)  # eigenvalues ascending
    components = vectors.flip(1)[:, :dim].T
    signs = components.gather(1, components.abs().argmax(1, keepdim=True)).sign()
    return (centred @ (components * signs).T).float()


def make_embedding(
    model: str,
    *,
    vocab_size: Any,
    token_counts: Any,
    tokenizer_dir: Any,
    embed_dim: int,
    vocab: str,
    min_count: int,
    embedding_init: str,
    freeze_embedding: bool,
    init_std: float,
) -> TokenEmbedding:
    """The :class:`TokenEmbedding` the four choices of the module docstring describe (arguments checked)."""
    vocab_size = text_vocab_size(model, vocab_size)
    embed_dim = positive_int(model, "embed_dim", embed_dim)
    if vocab not in VOCABS:
        raise ModelError(f"model {model!r}: vocab must be one of {', '.join(VOCABS)}, got {vocab!r}")
    if embedding_init not in INITS:
        raise ModelError(f"model {model!r}: embedding_init must be one of {', '.join(INITS)}, got {embedding_init!r}")
    if not isinstance(freeze_embedding, bool):
        raise ModelError(f"model {model!r}: freeze_embedding must be true or false, got {freeze_embedding!r}")
    if isinstance(min_count, bool) or not isinstance(min_count, Integral) or min_count < 1:
        raise ModelError(f"model {model!r}: min_count must be a positive integer, got {min_count!r}")
    index = None
    num_rows = vocab_size
    if vocab == "data":
        kept = kept_ids(model, token_counts, vocab_size, int(min_count))
        index = row_index(kept, vocab_size)
        num_rows = 2 + kept.numel()
    embedding = TokenEmbedding(num_rows, embed_dim, index)
    with torch.no_grad():
        if embedding_init == "random":
            embedding.weight.normal_(0.0, init_std)
        else:
            embedding.weight.copy_(_teacher_rows(model, tokenizer_dir, vocab_size, embed_dim, index, num_rows))
        embedding.weight[PAD_ROW] = 0
    embedding.weight.requires_grad_(not freeze_embedding)
    return embedding


def _teacher_rows(model: str, tokenizer_dir: Any, vocab_size: int, dim: int, index: torch.Tensor | None, num_rows: int) -> torch.Tensor:
    matrix = teacher_word_embeddings(model, tokenizer_dir)
    if matrix.shape[0] < vocab_size:
        raise ModelError(
            f"model {model!r}: the teacher's word embeddings in {tokenizer_dir} have {matrix.shape[0]} rows, "
            f"fewer than the data's vocab_size {vocab_size}; the data was not tokenized with this teacher's tokenizer"
        )
    projected = pca_rows(matrix, dim)[:vocab_size]
    if index is None:
        return projected
    rows = projected.new_zeros(num_rows, dim)
    rows[index[index >= 2]] = projected[index >= 2]
    unknown = index == UNK_ROW
    if unknown.any():
        rows[UNK_ROW] = projected[unknown].mean(0)
    return rows
