"""Distillation losses: pure tensor maths, registered by name, importing nothing else of distil.

Each loss is an ``nn.Module`` with ``forward(student, teacher, *, target=None) -> scalar``; its
docstring gives the paper and the formula. Multiply a loss by a number to get a weighted
:class:`Term`: ``KD(T=4) * 0.9 + ...`` is how objectives are written in Python.

- response (logits): CE, KD, DKD, DIST, LSKD, LogitMSE
- feature (intermediate maps): FitNet, AT, NST, VID, FT, AB
- attention (Transformer self-attention probabilities): AttentionKL
- relation (between samples of a batch): SP, RKD, PKT, CC
- contrastive: CRD
- elastic (a feature match traded for sparsity): ECL
- adversarial (a discriminator the student learns to fool): Adversarial
- semi-supervised (confident pseudo-labels): FixMatch, CoMatchGraph
"""

from distil.losses.adversarial import Adversarial
from distil.losses.attention import AttentionKL
from distil.losses.base import Loss, Term
from distil.losses.contrastive import CRD
from distil.losses.elastic import ECL
from distil.losses.feature import AB, AT, FT, NST, VID, FitNet
from distil.losses.registry import LOSSES, build_loss, list_losses, register_loss
from distil.losses.relation import CC, PKT, RKD, SP
from distil.losses.response import CE, DIST, DKD, KD, LSKD, LogitMSE
from distil.losses.semi_supervised import CoMatchGraph, FixMatch

__all__ = [
    "AB",
    "AT",
    "CC",
    "CE",
    "CRD",
    "DIST",
    "DKD",
    "ECL",
    "FT",
    "KD",
    "LOSSES",
    "LSKD",
    "NST",
    "PKT",
    "RKD",
    "SP",
    "VID",
    "Adversarial",
    "AttentionKL",
    "CoMatchGraph",
    "FitNet",
    "FixMatch",
    "LogitMSE",
    "Loss",
    "Term",
    "build_loss",
    "list_losses",
    "register_loss",
]
