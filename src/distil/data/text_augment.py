"""Text augmentation for the transfer set: masking, random replacement and n-gram sampling of token ids.

Tang et al. 2019, "Distilling Task-Specific Knowledge from BERT into Simple Neural Networks", §3.3:
a small student learns more from the teacher when it sees many more sentences than the labelled
set holds, so the transfer set is grown with perturbed copies whose soft labels the teacher gives.
For each sentence, each token ``w_i`` draws ``u_i ~ U[0, 1)``:

- ``u_i < p_mask``: ``w_i`` → ``[MASK]`` (masking);
- ``p_mask ≤ u_i < p_mask + p_replace``: ``w_i`` → a random vocabulary word (replacement);

then, with probability ``p_ng``, only an n-gram of the result is kept, ``n ~ U{1, …, max_ngram}``
(clipped to the sentence), at a uniform position: ``[CLS] w_s … w_{s+n-1} [SEP]``, re-padded right.
The paper's ``n_iter`` synthetic copies per sentence are the view cache's ``K`` views.

Where this differs from the paper: the paper replaces a word by another word of the *same part of
speech* (POS-guided, tags from spaCy); here the replacement is drawn uniformly from the ids that occur
in the training data (``token_counts > 0``), or from the whole vocabulary when no counts are given —
always minus the special ids. Tokens are the tokenizer's (word pieces for BERT-family vocabularies),
so a "word" here is a token.

Replayable views: a view's only parameter is one integer seed per sentence (:class:`TextParams`, 4
bytes stored). Every choice :meth:`TextAugment.apply` makes is a counter-based hash of
``(seed, position, stream)`` — the splitmix64 finalizer in int64 torch ops, no Python loop over
sentences — so the same seed gives the same sentence on any device, for any batch it is part of, and
whatever trailing padding the batch has (a trimmed batch gives the same view, trimmed).

Special ids (``[PAD]``, ``[UNK]``, ``[MASK]``, ``[CLS]``, ``[SEP]``) are never masked or replaced;
padding stays padding.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from distil.errors import DataError

#: Bump when :meth:`TextAugment.apply` would turn a seed into another sentence: cached views then stop matching.
HASH_VERSION = 1

#: The special ids a :class:`TextAugment` needs by name (``unk`` is optional).
NEEDED_SPECIAL = ("pad", "mask", "cls", "sep")

_BITS = 24  # resolution of a probability: events are "top 24 bits of the hash < round(p · 2^24)"
_ONE = 1 << _BITS

# Streams: independent hash sequences for the independent choices.
_TOKEN, _WORD, _NGRAM, _LENGTH, _START = range(5)


def _signed(value: int) -> int:
    """The int64 with the same 64 bits as the unsigned ``value`` (mod 2^64)."""
    value %= 1 << 64
    return value - (1 << 64) if value >= 1 << 63 else value


_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = _signed(0xBF58476D1CE4E5B9)
_MIX2 = _signed(0x94D049BB133111EB)


def _shr(z: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 ``z`` by ``k`` (torch's ``>>`` is arithmetic: it copies the sign)."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def mix64(z: torch.Tensor) -> torch.Tensor:
    """The splitmix64 finalizer (Steele, Lea & Flood 2014) on int64 ``z``, bits read as unsigned.

    ``z ^= z >> 30; z *= 0xbf58476d1ce4e5b9; z ^= z >> 27; z *= 0x94d049bb133111eb; z ^= z >> 31``,
    with logical shifts and multiplication mod 2^64 (int64 multiplication wraps).
    """
    z = (z ^ _shr(z, 30)) * _MIX1
    z = (z ^ _shr(z, 27)) * _MIX2
    return z ^ _shr(z, 31)


def hash64(seed: torch.Tensor, counter: torch.Tensor | int, stream: int) -> torch.Tensor:
    """64 random bits (int64) for each ``(seed, counter)`` of stream ``stream``; broadcasts like ``seed + counter``.

    ``mix64(mix64(seed + γ·(stream + 1)) + γ·(counter + 1))`` with γ = 0x9e3779b97f4a7c15 (mod 2^64):
    a counter-based generator, so any element can be computed without the others.
    """
    key = mix64(seed + _signed(_GOLDEN * (stream + 1)))
    return mix64(key + (counter + 1) * _signed(_GOLDEN))


def _below(bits: torch.Tensor, p: float) -> torch.Tensor:
    """Events of probability ``p``: the top 24 bits of ``bits`` below ``round(p · 2^24)`` (integers only)."""
    return _shr(bits, 64 - _BITS) < round(p * _ONE)


def _uniform_int(bits: torch.Tensor, n: torch.Tensor | int) -> torch.Tensor:
    """An integer in ``[0, n)`` from 53 of the hash's bits (bias ≤ n / 2^53)."""
    return _shr(bits, 11) % n


def replacement_ids(vocab_size: int, special: Mapping[str, int], token_counts: torch.Tensor | Sequence[int] | None = None) -> torch.Tensor:
    """The ids replacement draws from: those with ``token_counts > 0`` (else all ``vocab_size``), minus the specials."""
    if token_counts is None:
        ids = torch.arange(vocab_size)
    else:
        counts = torch.as_tensor(token_counts)
        if counts.dim() != 1 or len(counts) != vocab_size:
            raise DataError(f"token_counts must have one count per id of the vocabulary ({vocab_size}), got shape {tuple(counts.shape)}")
        ids = (counts > 0).nonzero().flatten()
    return ids[~torch.isin(ids, torch.tensor(sorted(set(special.values())), dtype=ids.dtype))].long()


@dataclass(frozen=True, eq=False)
class TextParams:
    """The seed of each of ``N`` sentences' augmentation (int64 ``(N,)``, in ``[0, 2^31)``)."""

    seed: torch.Tensor

    def __len__(self) -> int:
        return self.seed.shape[0]

    def to(self, device: torch.device | str) -> TextParams:
        return TextParams(self.seed.to(device))


def _probability(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise DataError(f"text augmentation {name} must be a probability in [0, 1], got {value!r}")


@dataclass(frozen=True, eq=False)
class TextAugment:
    """Masking (``mask``), random replacement (``replace``) and n-gram sampling (``ngram``) of token batches.

    ``special``: ids by name, at least ``pad``, ``mask``, ``cls`` and ``sep`` (every id in it is left
    alone); ``vocab``: the ids replacement draws from (see :func:`replacement_ids`; needed only when
    ``replace > 0``). Inputs are int ``(N, L)`` token ids right-padded with ``special["pad"]``.
    With all three probabilities 0 it is the identity and :attr:`enabled` is False.
    """

    special: Mapping[str, int]
    vocab: torch.Tensor | None = None
    mask: float = 0.0
    replace: float = 0.0
    ngram: float = 0.0
    max_ngram: int = 5
    _vocab_on: dict[str, torch.Tensor] = field(default_factory=dict, init=False, repr=False)  # vocab per device, filled on use

    def __post_init__(self) -> None:
        for name in ("mask", "replace", "ngram"):
            _probability(name, getattr(self, name))
        if self.mask + self.replace > 1:
            raise DataError(f"text augmentation mask + replace must be at most 1 (one draw per token), got {self.mask} + {self.replace}")
        if isinstance(self.max_ngram, bool) or not isinstance(self.max_ngram, int) or self.max_ngram < 1:
            raise DataError(f"max_ngram must be an int >= 1, got {self.max_ngram!r}")
        missing = [name for name in NEEDED_SPECIAL if name not in self.special]
        if missing:
            raise DataError(f"text augmentation needs the special ids {list(NEEDED_SPECIAL)}, missing {missing} (got {dict(self.special)})")
        if self.replace > 0 and (self.vocab is None or self.vocab.dim() != 1 or len(self.vocab) == 0):
            raise DataError("text augmentation replace > 0 needs a non-empty 1-D tensor of replacement ids (vocab)")

    @classmethod
    def for_text(cls, text: Any, mask: float = 0.0, replace: float = 0.0, ngram: float = 0.0, max_ngram: int = 5) -> TextAugment:
        """For data described by ``text`` (a :class:`~distil.data.TextInfo`: ``special_ids`` by role, ``vocab_size``, ``token_counts``)."""
        special = {role: i for role, i in text.special_ids.items() if i is not None}
        vocab = replacement_ids(text.vocab_size, special, getattr(text, "token_counts", None))
        return cls(special, vocab, mask=mask, replace=replace, ngram=ngram, max_ngram=max_ngram)

    @property
    def enabled(self) -> bool:
        """Whether this changes inputs at all (if not, teacher outputs can be cached)."""
        return self.mask > 0 or self.replace > 0 or self.ngram > 0

    @property
    def view_bytes(self) -> int:
        """Bytes of one stored view: its seed as int32."""
        return 4

    def sample(self, n: int, generator: torch.Generator, device: torch.device | str | None = None) -> TextParams:
        """Draw one seed per sentence from ``generator`` (on its device), then move them to ``device``."""
        seed = torch.randint(0, 1 << 31, (n,), generator=generator, device=generator.device)
        params = TextParams(seed)
        return params if device is None else params.to(device)

    def _vocab(self, device: torch.device) -> torch.Tensor:
        assert self.vocab is not None
        key = str(device)
        if key not in self._vocab_on:
            self._vocab_on[key] = self.vocab.to(device)
        return self._vocab_on[key]

    def apply(self, x: torch.Tensor, params: TextParams) -> torch.Tensor:
        """``x`` with each sentence augmented as its seed in ``params`` says; a new tensor (``x`` if disabled)."""
        if not self.enabled:
            return x
        if x.dim() != 2 or x.dtype.is_floating_point or x.dtype == torch.bool:
            raise DataError(f"text augmentation needs token ids of shape (N, L) (an integer tensor), got {x.dtype} {tuple(x.shape)}")
        if len(params) != len(x):
            raise DataError(f"augment params are for {len(params)} sentences but the batch has {len(x)}")
        seed = params.seed.to(x.device).long()
        position = torch.arange(x.shape[1], device=x.device)
        out = x
        if self.mask > 0 or self.replace > 0:
            out = self._mask_and_replace(x, seed, position)
        if self.ngram > 0:
            out = self._ngrams(x, out, seed, position)
        return out

    def _mask_and_replace(self, x: torch.Tensor, seed: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """One draw per token: below ``mask`` → [MASK], then below ``mask + replace`` → a random id."""
        eligible = torch.ones_like(x, dtype=torch.bool)
        for token in set(self.special.values()):
            eligible &= x != token
        u = _shr(hash64(seed[:, None], position[None, :], _TOKEN), 64 - _BITS)
        low, high = round(self.mask * _ONE), round((self.mask + self.replace) * _ONE)
        out = torch.where(eligible & (u < low), self.special["mask"], x)
        if self.replace > 0:
            vocab = self._vocab(x.device)
            word = vocab[_uniform_int(hash64(seed[:, None], position[None, :], _WORD), len(vocab))].to(x.dtype)
            out = torch.where(eligible & (u >= low) & (u < high), word, out)
        return out

    def _ngrams(self, x: torch.Tensor, out: torch.Tensor, seed: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """With probability ``ngram`` keep ``[CLS]`` + a random n-gram of ``out`` + ``[SEP]``, re-padded right.

        The sentence's extent and its [CLS]/[SEP] are read from ``x`` (masking never touches them).
        """
        pad, cls, sep = self.special["pad"], self.special["cls"], self.special["sep"]
        length = (x != pad).sum(1)
        last = x.gather(1, (length - 1).clamp(min=0)[:, None])[:, 0]
        has_cls = (length > 0) & (x[:, 0] == cls)
        has_sep = (length > has_cls.long()) & (last == sep)
        first = has_cls.long()  # the n-gram is taken from positions [first, first + inner)
        inner = length - first - has_sep.long()
        take = _below(hash64(seed, 0, _NGRAM), self.ngram) & (inner > 0)
        n = torch.minimum(1 + _uniform_int(hash64(seed, 0, _LENGTH), self.max_ngram), inner).clamp(min=1)
        start = first + _uniform_int(hash64(seed, 0, _START), (inner - n + 1).clamp(min=1))
        k = position[None, :] - first[:, None]  # place in the n-gram of each output position
        n, start = n[:, None], start[:, None]
        keep_cls = has_cls[:, None] & (position[None, :] == 0)
        keep_word = (k >= 0) & (k < n)
        keep_sep = has_sep[:, None] & (k == n)
        source = torch.where(keep_word, start + k, torch.where(keep_sep, (length - 1)[:, None], 0))
        cut = torch.where(keep_cls | keep_word | keep_sep, out.gather(1, source.clamp(0, x.shape[1] - 1)), pad)
        return torch.where(take[:, None], cut, out)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Draw a seed per sentence of ``x`` from ``generator`` and apply them (identity if disabled)."""
        if not self.enabled:
            return x
        return self.apply(x, self.sample(len(x), generator, device=x.device))

    def pack(self, params: TextParams) -> dict[str, torch.Tensor]:
        """The seeds as int32 (they are below 2^31)."""
        return {"seed": params.seed.to(torch.int32)}

    def unpack(self, table: Mapping[str, torch.Tensor]) -> TextParams:
        return TextParams(table["seed"].long())

    def settings(self) -> dict[str, Any]:
        """What a view depends on besides its seed (part of cache keys): probabilities, ids, the hash's version."""
        used = self.vocab is not None and self.replace > 0
        vocab = hashlib.sha256(self.vocab.cpu().long().numpy().tobytes()).hexdigest()[:16] if used and self.vocab is not None else None
        return {
            "text": HASH_VERSION,
            "mask": self.mask,
            "replace": self.replace,
            "ngram": self.ngram,
            "max_ngram": self.max_ngram,
            "special": dict(sorted(self.special.items())),
            "vocab": vocab,
        }
