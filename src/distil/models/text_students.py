"""Small text students: ``bilstm``, ``lstm``, ``textcnn``, ``boe`` (bag of embeddings).

Every one reads int64 token ids ``(B, L)``, right-padded with 0, and returns logits
``(B, num_classes)``; padding never changes the output (appending padding columns gives the same
logits), so the engine may cut a batch to its longest sentence. Each starts with ``embedding``, a
:class:`~distil.models.text_embedding.TokenEmbedding` (kwargs ``embed_dim``, ``vocab``,
``min_count``, ``embedding_init``, ``freeze_embedding``; see that module), and ends with
``features`` (an ``nn.Identity`` on the sentence vector, a tap) and the classifier ``fc``.

* ``bilstm`` — Tang et al., 2019, "Distilling Task-Specific Knowledge from BERT into Simple Neural
  Networks" (arXiv:1903.12136): one BiLSTM layer (150 units per direction) over 300-d embeddings;
  the final hidden states of both directions, concatenated (``features``, 300-d), go through a
  200-unit ReLU layer (``hidden``) to ``fc``. ``lstm`` is the same with one direction (300 units,
  so the sentence vector is as wide). The backward LSTM reads each sentence reversed within its
  length (:class:`LSTMLayer`), so no state it uses ever reads padding — the result of
  ``pack_padded_sequence`` without its host sync per batch, and exportable to ONNX.
* ``textcnn`` — Kim, 2014, "Convolutional Neural Networks for Sentence Classification"
  (arXiv:1408.5882): filters of widths 3, 4, 5 with 100 maps each over 300-d embeddings, ReLU,
  max-over-time (``features``, 300-d), dropout 0.5, ``fc``. As in Kim's code each sentence is
  padded with w−1 zero vectors on both sides, so a sentence shorter than a filter still has
  windows; windows that hold no real token are masked out of the max. (Kim's max-norm constraint
  on ``fc`` is left out.)
* ``boe`` — fastText-style bag of embeddings (Joulin et al., 2017, arXiv:1607.01759): the mean of
  the tokens' embeddings (``features``), an optional ReLU layer (``hidden``), ``fc``.

With vocab "data" on a 3,600-sentence MR training split (5.8k ids occur at least twice) the defaults
have: ``bilstm`` 2.35M parameters (1.75M of them embeddings), ``lstm`` 2.53M, ``textcnn`` 2.11M,
``boe`` 1.75M; ``embed_dim=200`` brings ``bilstm`` to 1.6M.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from distil.models.checks import positive_int, positive_ints, probability
from distil.models.registry import register_model
from distil.models.text_embedding import PAD_ID, TokenEmbedding, make_embedding

#: σ of the random embedding rows of these students (close to Kim's U[-0.25, 0.25], σ = 0.144).
INIT_STD = 0.1


def _hidden_layer(width: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(OrderedDict(linear=nn.Linear(width, hidden), relu=nn.ReLU()))


def reverse_within(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each row of ``x`` (B, L, F) with its first ``lengths[b]`` steps reversed and the rest in place (self-inverse)."""
    steps = torch.arange(x.shape[1], device=x.device)
    order = torch.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)  # (B, L)
    return x.gather(1, order.unsqueeze(-1).expand_as(x))


class LSTMLayer(nn.Module):
    """One LSTM layer over right-padded sequences: ``fwd`` left to right, and (bidirectional) ``bwd``.

    ``bwd`` runs left to right over each sequence reversed within its length, so it too starts at a
    real token; an LSTM's output at step t depends only on steps ≤ t, so no output at a real token
    ever reads padding. Output (B, L, H·directions): at each real token the states of both directions.
    """

    def __init__(self, inputs: int, hidden_size: int, bidirectional: bool) -> None:
        super().__init__()
        self.fwd = nn.LSTM(inputs, hidden_size, batch_first=True)
        self.bwd = nn.LSTM(inputs, hidden_size, batch_first=True) if bidirectional else None

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        out, _ = self.fwd(x)
        if self.bwd is None:
            return out
        back, _ = self.bwd(reverse_within(x, lengths))
        return torch.cat([out, reverse_within(back, lengths)], dim=-1)


class RNNClassifier(nn.Module):
    """``embedding`` → ``layers.i`` (LSTM) → final states (``features``) → ``dropout`` → [``hidden``] → ``fc``.

    The sentence vector is the forward state after the last real token, concatenated (bidirectional)
    with the backward state after the first. Tap ``layers.i`` for per-token states (B, L, H·directions).
    """

    def __init__(
        self,
        embedding: TokenEmbedding,
        num_classes: int,
        hidden_size: int,
        layers: int,
        bidirectional: bool,
        mlp_hidden: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.embedding = embedding
        self.hidden_size = hidden_size
        self.directions = 2 if bidirectional else 1
        width = hidden_size * self.directions
        self.layers = nn.ModuleList(
            LSTMLayer(embedding.embedding_dim if i == 0 else width, hidden_size, bidirectional) for i in range(layers)
        )
        self.features = nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.hidden = _hidden_layer(width, mlp_hidden) if mlp_hidden else nn.Identity()
        self.fc = nn.Linear(mlp_hidden or width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lengths = (x != PAD_ID).sum(1).clamp(min=1)  # an empty row reads one padding token (a zero vector)
        h = self.embedding(x)
        for i, layer in enumerate(self.layers):
            h = layer(self.dropout(h) if i > 0 else h, lengths)  # dropout between layers, as nn.LSTM's
        last = h.gather(1, (lengths - 1).view(-1, 1, 1).expand(-1, 1, h.shape[-1])).squeeze(1)
        final = last if self.directions == 1 else torch.cat([last[:, : self.hidden_size], h[:, 0, self.hidden_size :]], dim=1)
        return self.fc(self.hidden(self.dropout(self.features(final))))


class TextCNN(nn.Module):
    """``embedding`` → ``convs.i`` (width w_i, wide) → ReLU → masked max-over-time (``features``) → ``dropout`` → ``fc``."""

    def __init__(self, embedding: TokenEmbedding, num_classes: int, widths: Sequence[int], maps: int, dropout: float) -> None:
        super().__init__()
        self.embedding = embedding
        self.convs = nn.ModuleList(nn.Conv1d(embedding.embedding_dim, maps, w, padding=w - 1) for w in widths)
        self.relu = nn.ReLU()
        self.features = nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(maps * len(widths), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = x != PAD_ID
        lengths = mask.sum(1, keepdim=True)
        emb = (self.embedding(x) * mask.unsqueeze(-1)).transpose(1, 2)  # (B, E, L), padding positions zero
        pooled = []
        for conv in self.convs:
            out = self.relu(conv(emb))  # (B, maps, L + w - 1); output j reads tokens j-w+1 .. j
            width = conv.kernel_size[0]
            # Windows starting after the last real token read only padding. ReLU outputs are ≥ 0, so
            # masking with 0 leaves the max of the valid windows (there is at least one when w > 1).
            valid = torch.arange(out.shape[-1], device=x.device) < lengths + width - 1
            pooled.append(out.masked_fill(~valid.unsqueeze(1), 0.0).amax(-1))
        return self.fc(self.dropout(self.features(torch.cat(pooled, dim=1))))


class BagOfEmbeddings(nn.Module):
    """``embedding`` → masked mean (``features``) → [``hidden``] → ``dropout`` → ``fc``."""

    def __init__(self, embedding: TokenEmbedding, num_classes: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.embedding = embedding
        self.features = nn.Identity()
        self.hidden = _hidden_layer(embedding.embedding_dim, hidden) if hidden else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden or embedding.embedding_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = (x != PAD_ID).unsqueeze(-1)
        mean = (self.embedding(x) * mask).sum(1) / mask.sum(1).clamp(min=1)
        return self.fc(self.dropout(self.hidden(self.features(mean))))


def student_embedding(name: str, args: dict[str, Any]) -> TokenEmbedding:
    """The token embedding of a student factory's arguments (its locals()), with this module's init σ."""
    keys = ("vocab_size", "token_counts", "tokenizer_dir", "embed_dim", "vocab", "min_count", "embedding_init", "freeze_embedding")
    return make_embedding(name, **{k: args[k] for k in keys}, init_std=INIT_STD)


def _lstm(name: str, args: dict[str, Any], bidirectional: bool) -> RNNClassifier:
    embedding = student_embedding(name, args)
    hidden_size = positive_int(name, "hidden_size", args["hidden_size"])
    layers = positive_int(name, "layers", args["layers"])
    mlp_hidden = 0 if args["mlp_hidden"] == 0 else positive_int(name, "mlp_hidden", args["mlp_hidden"])
    dropout = probability(name, "dropout", args["dropout"])
    return RNNClassifier(embedding, args["num_classes"], hidden_size, layers, bidirectional, mlp_hidden, dropout)


@register_model(
    "bilstm", "BiLSTM (Tang et al. 2019): 300-d embeddings, 150 units per direction, final states → 200-unit ReLU → fc; token ids"
)
def bilstm(
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    vocab_size: int | None = None,
    token_counts: torch.Tensor | None = None,
    tokenizer_dir: str | None = None,
    embed_dim: int = 300,
    vocab: str = "data",
    min_count: int = 2,
    embedding_init: str = "random",
    freeze_embedding: bool = False,
    hidden_size: int = 150,
    layers: int = 1,
    mlp_hidden: int = 200,
    dropout: float = 0.2,
) -> RNNClassifier:
    """Bidirectional LSTM over token ids; final hidden states of both directions → ReLU layer → logits."""
    return _lstm("bilstm", locals(), bidirectional=True)


@register_model("lstm", "LSTM, one direction: 300-d embeddings, 300 units, final state → 200-unit ReLU → fc; token ids")
def lstm(
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    vocab_size: int | None = None,
    token_counts: torch.Tensor | None = None,
    tokenizer_dir: str | None = None,
    embed_dim: int = 300,
    vocab: str = "data",
    min_count: int = 2,
    embedding_init: str = "random",
    freeze_embedding: bool = False,
    hidden_size: int = 300,
    layers: int = 1,
    mlp_hidden: int = 200,
    dropout: float = 0.2,
) -> RNNClassifier:
    """Left-to-right LSTM over token ids; final hidden state → ReLU layer → logits."""
    return _lstm("lstm", locals(), bidirectional=False)


@register_model("textcnn", "TextCNN (Kim 2014): 300-d embeddings, filters 3/4/5 × 100 maps, masked max-over-time, dropout 0.5; token ids")
def textcnn(
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    vocab_size: int | None = None,
    token_counts: torch.Tensor | None = None,
    tokenizer_dir: str | None = None,
    embed_dim: int = 300,
    vocab: str = "data",
    min_count: int = 2,
    embedding_init: str = "random",
    freeze_embedding: bool = False,
    widths: Sequence[int] = (3, 4, 5),
    maps: int = 100,
    dropout: float = 0.5,
) -> TextCNN:
    """Kim's convolutional sentence classifier over token ids."""
    embedding = student_embedding("textcnn", locals())
    return TextCNN(
        embedding,
        num_classes,
        positive_ints("textcnn", "widths", widths),
        positive_int("textcnn", "maps", maps),
        probability("textcnn", "dropout", dropout),
    )


@register_model("boe", "bag of embeddings (fastText-style): masked mean of 300-d embeddings → [ReLU layer] → fc; token ids")
def boe(
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    vocab_size: int | None = None,
    token_counts: torch.Tensor | None = None,
    tokenizer_dir: str | None = None,
    embed_dim: int = 300,
    vocab: str = "data",
    min_count: int = 2,
    embedding_init: str = "random",
    freeze_embedding: bool = False,
    hidden: int = 0,
    dropout: float = 0.0,
) -> BagOfEmbeddings:
    """Mean of the token embeddings, an optional hidden ReLU layer (``hidden`` units; 0 = none), logits."""
    embedding = student_embedding("boe", locals())
    width = 0 if hidden == 0 else positive_int("boe", "hidden", hidden)
    return BagOfEmbeddings(embedding, num_classes, width, probability("boe", "dropout", dropout))
