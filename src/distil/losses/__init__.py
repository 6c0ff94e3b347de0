"""Distillation losses: pure tensor maths, registered by name, importing nothing else of distil.

Each loss is an ``nn.Module`` with ``forward(student, teacher, *, target=None) -> scalar``; its
docstring gives the paper and the formula. Multiply a loss by a number to get a weighted
:class:`Term`: ``KD(T=4) * 0.9 + ...`` is how objectives are written in Python.

- response (logits): CE, KD, DKD, DIST, LSKD, LogitMSE
- feature (intermediate maps): FitNet, AT, NST, VID, FT, AB
- attention (Transformer self-attention probabilities): AttentionKL
- relation (between samples of a batch): SP, RKD, PKT, CC
- contrastive: CRD
- self-supervised (two views, or an EMA teacher): InfoNCE, BYOL, BarlowTwins, SEED, DINO
- elastic (a feature match traded for sparsity): ECL
- adversarial (a discriminator the student learns to fool): Adversarial
- semi-supervised (confident pseudo-labels): FixMatch, CoMatchGraph
- token distributions (language models, per position, masked): TokenCE, FKL, RKL, GJSD, TVD, SKL, SRKL
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
from distil.losses.self_supervised import BYOL, DINO, SEED, BarlowTwins, InfoNCE
from distil.losses.semi_supervised import CoMatchGraph, FixMatch
from distil.losses.token_distributions import FKL, GJSD, RKL, SKL, SRKL, TVD, TokenCE

__all__ = [
    "FKL",
    "GJSD",
    "RKL",
    "SKL",
    "SRKL",
    "TVD",
    "TokenCE",
    "AB",
    "AT",
    "BYOL",
    "CC",
    "CE",
    "CRD",
    "DINO",
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
    "SEED",
    "SP",
    "VID",
    "Adversarial",
    "AttentionKL",
    "BarlowTwins",
    "CoMatchGraph",
    "FitNet",
    "FixMatch",
    "InfoNCE",
    "LogitMSE",
    "Loss",
    "Term",
    "build_loss",
    "list_losses",
    "register_loss",
]
