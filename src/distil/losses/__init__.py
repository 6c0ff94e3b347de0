"""Distillation losses: pure tensor maths, registered by name, importing nothing else of distil.

Each loss is an ``nn.Module`` with ``forward(student, teacher, *, target=None) -> scalar``; its
docstring gives the paper and the formula. Multiply a loss by a number to get a weighted
:class:`Term`: ``KD(T=4) * 0.9 + ...`` is how objectives are written in Python.
"""

from distil.losses.base import Loss, Term
from distil.losses.registry import LOSSES, build_loss, list_losses, register_loss
from distil.losses.response import CE, KD

__all__ = ["CE", "KD", "LOSSES", "Loss", "Term", "build_loss", "list_losses", "register_loss"]
