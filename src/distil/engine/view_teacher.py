"""Teacher outputs on *another view* of the batch: the two-view methods of self- and semi-supervised learning.

The ordinary sources (:mod:`distil.engine.teacher_sources`) give the teacher the student's own input.
Self-supervised distillation compares the student's embedding of one augmented view with the
teacher's of another (SimCLR, BYOL, DINO, SEED); FixMatch lets the pseudo-labeller see a weakly
augmented view while the student sees a strong one. :class:`ViewTeacher` is the teacher-outputs
callable of the one training loop for both: for the batch ``index`` it draws its own view of the
stored inputs ``inputs[index]`` (its own augmentation and random stream) and runs the teacher on it
without gradient. With ``follow`` set, the teacher is an :class:`~distil.engine.ema.EmaModel` of
that student, brought up to date when the step asks for the teacher's outputs (after the student's
forward of the step, so from the weights of the previous optimizer step; the BatchNorm statistics it
copies already include this batch).

Its state — the EMA's weights and update count, and the position of its view stream — is part of a
fit's checkpoint (:meth:`ViewTeacher.state_dict`), so a resumed run continues as the uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from distil.data.tokens import trim
from distil.engine.ema import EmaModel
from distil.engine.evaluate import use_channels_last
from distil.engine.taps import LOGITS, Taps

#: ``augment(x, generator) -> x'`` (an :class:`~distil.data.Augment` or any batch transform)
View = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


class ViewTeacher:
    """No-grad, eval-mode teacher outputs (``taps`` and the logits) on a view of ``inputs[index]``.

    ``view=None`` shows the teacher the stored inputs as they are (paired data: its own inputs, another
    modality than the student's). ``follow``: the student whose EMA ``teacher`` is (an :class:`EmaModel`);
    it is updated from the student on every call. ``details`` add to :attr:`info`.
    """

    views = None  # never replays pre-drawn views: the trainer draws the student's view itself

    def __init__(
        self,
        teacher: nn.Module,
        inputs: torch.Tensor,
        view: View | None,
        taps: Iterable[str] = (LOGITS,),
        *,
        seed: int,
        follow: nn.Module | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        if follow is not None and not isinstance(teacher, EmaModel):
            raise TypeError("follow= needs the teacher to be an EmaModel of the student it follows")
        self.teacher = teacher
        self.model = teacher.average if isinstance(teacher, EmaModel) else teacher
        self.model.eval().requires_grad_(False)
        use_channels_last(self.model, inputs)  # as the trainer lays out the student it follows
        self.inputs = inputs
        self.view = view
        self.taps = set(taps) | {LOGITS}
        self.follow = follow
        self.generator = torch.Generator().manual_seed(seed)
        self._info: dict[str, Any] = {
            "kind": "online, another view" if view is not None else "online",
            "taps": sorted(self.taps),
            **({"ema_momentum": teacher.momentum} if isinstance(teacher, EmaModel) else {}),
            **(details or {}),
        }

    @property
    def info(self) -> dict[str, Any]:
        """What the row says about the teacher's outputs (with an EMA: how many updates it had)."""
        if isinstance(self.teacher, EmaModel):
            return {**self._info, "ema_updates": self.teacher.updates}
        return dict(self._info)

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps: the view stream's generator state and, for an EMA, its weights and update count."""
        state: dict[str, Any] = {"generator": self.generator.get_state()}
        if isinstance(self.teacher, EmaModel):
            state["ema"] = dict(self.teacher.average.state_dict())
            state["ema_updates"] = torch.tensor(self.teacher.updates)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        if isinstance(self.teacher, EmaModel):
            self.teacher.average.load_state_dict(state["ema"])
            self.teacher.updates = int(state["ema_updates"])

    def __call__(self, index: torch.Tensor, x: torch.Tensor, view: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if self.follow is not None:
            assert isinstance(self.teacher, EmaModel)
            self.teacher.update(self.follow)
        xb = self.inputs[index]
        if self.view is not None:
            xb = self.view(xb, self.generator)
        with torch.no_grad(), Taps(self.model, self.taps) as tapped:
            return tapped.forward(trim(xb))
