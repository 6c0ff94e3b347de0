"""What every sequence-to-sequence model of :data:`distil.models.seq2seq.SEQ2SEQ` gives its decoders.

A model has ``encode(src) → Encoded`` and ``decode(tgt_in, enc, state) → (logits, state')``:
``decode`` reads the target prefix ``tgt_in`` ``(B, T)`` after the tokens the ``state`` has seen (none
when ``state`` is ``None``: then ``enc.state`` is used) and returns the logits ``(B, T, V)`` and the state
after them. The greedy and beam decoders (:mod:`distil.models.seq2seq_decode`), the ONNX export
(:mod:`distil.compress.seq2seq_export`) and the server depend on this interface only, and on one
convention for the state: **a tuple of tensors with the batch on dim 1**. The LSTM's state is
``(h, c)`` ``(layers, B, H)``; the transformer's is its key/value cache ``(keys, values)``
``(layers, B, heads, P, D/heads)``. So one line reorders any model's state for beam search
(``tuple(s[:, rows] for s in state)``, :func:`reorder_state`) and one line repeats it
(:meth:`Encoded.repeat`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: A decoder's state: tensors with the batch on dim 1 (see the module doc).
State = tuple[torch.Tensor, ...]


def reorder_state(state: State, rows: torch.Tensor) -> State:
    """Row ``i`` of the result is row ``rows[i]`` of ``state`` (beam search keeping the chosen hypotheses)."""
    return tuple(s.index_select(1, rows) for s in state)


@dataclass
class Encoded:
    """The encoder's output: ``memory`` ``(B, S, ·)`` (what the decoder reads of the source), ``mask``
    ``(B, S)`` (True at real tokens), the decoder's first ``state`` (batch on dim 1)."""

    memory: torch.Tensor
    mask: torch.Tensor
    state: State

    def repeat(self, k: int) -> Encoded:
        """Each row ``k`` times in a row (beam search: row ``b·k + j`` is beam ``j`` of sentence ``b``)."""
        return Encoded(self.memory.repeat_interleave(k, 0), self.mask.repeat_interleave(k, 0), tuple(s.repeat_interleave(k, 1) for s in self.state))
