"""An ensemble of sequence-to-sequence models as one model: the interface of
:mod:`distil.models.seq2seq_encoded`, so the greedy and beam decoders, word-level KD and the scores use
it as they use one model.

Hinton et al. 2015 §3 per target position (the maths: :func:`distil.models.ensemble.ensemble_logits`):
at every position ``j`` the ensemble's distribution is ``p̄_T(·|y_<j, x) = Σ_i w_i softmax(z_i(·|y_<j, x) / T)``
and its logits are ``T · log p̄_T``. So

* **word-level KD** from the ensemble (Kim & Rush 2016 §3.1 with an ensemble teacher): ``forward(src,
  tgt_in)`` under teacher forcing gives ``T · log p̄_T`` ``(B, T, V)``, and the ordinary per-token
  ``KD(T)`` term (padding masked, :mod:`distil.engine.seq2seq`) reads ``softmax(· / T) = p̄_T``;
* **the ensemble's beam search** (Kim & Rush §3.2's teacher being an ensemble, as their own): at T = 1
  each decoder step returns ``log p̄``, so the beam scores sum the log of the members' averaged
  probabilities, one step at a time, every member keeping its own decoder state (an LSTM's ``(h, c)``, a
  Transformer's key/value cache). The ensemble's state is the members' states concatenated into one
  tuple (batch on dim 1 in every tensor), so the decoders' one-line reordering serves it unchanged.

Members may be any archs of :data:`distil.models.seq2seq.SEQ2SEQ` sharing the source and target
vocabularies (the run's tokenizers).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from distil.models.ensemble import Ensemble
from distil.models.seq2seq_encoded import Encoded, State


@dataclass
class MembersEncoded:
    """Each member's :class:`Encoded`; ``state`` is their first decoder states in one tuple."""

    members: list[Encoded]

    @property
    def state(self) -> State:
        return tuple(s for e in self.members for s in e.state)

    def repeat(self, k: int) -> MembersEncoded:
        return MembersEncoded([e.repeat(k) for e in self.members])


class Seq2SeqEnsemble(Ensemble):
    """Sequence-to-sequence members combined per target position (see the module doc)."""

    def encode(self, src: torch.Tensor) -> MembersEncoded:
        return MembersEncoded([m.encode(src) for m in self.members])

    def decode(self, tgt_in: torch.Tensor, enc: MembersEncoded, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Combined logits ``(B, T, V)`` for ``tgt_in`` and every member's state after it, in one tuple."""
        state = state if state is not None else enc.state
        logits, after, at = [], [], 0
        for member, encoded in zip(self.members, enc.members):
            n = len(encoded.state)
            z, s = member.decode(tgt_in, encoded, state[at : at + n])
            at += n
            logits.append(z.float())
            after.extend(s)
        return self.combined(torch.stack(logits)), tuple(after)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.decode(tgt_in, self.encode(src))[0]
