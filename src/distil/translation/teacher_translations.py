"""Sequence-level KD's targets: the teacher's beam-search translations of the training sources.

Kim & Rush 2016 §3.2 train the student on ``ŷ = beam_search(teacher, x)`` in place of the reference
``y``: the mode of the teacher's sequence distribution, easier to fit than the data. Decoding the
training sources with a beam is the costliest step of the method, so it is done once and cached like
any teacher output (:class:`distil.engine.teacher_store.TeacherStore`): the key covers the teacher's
weights and settings (an ensemble's: every member's, its mixing weights and ``combine``), the source token
tensor, the beam width, the length penalty and the length limit, so a
changed teacher or corpus never meets a stale entry and a second run (another seed of the students,
another method) reads the file.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from distil.data.tokens import PAD_ID
from distil.engine.teacher_store import TeacherStore, cache_key
from distil.models.seq2seq_decode import BOS_ID, EOS_ID, decode


def teacher_targets(
    teacher: nn.Module, src: torch.Tensor, *, beam: int, alpha: float, max_length: int, store: TeacherStore | None = None, batch_size: int = 64
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Targets ``[BOS] ŷ [EOS]`` ``(N, T)`` (right-padded, at most ``max_length`` ids) and how they were got.

    A hypothesis that hit the length limit without ``[EOS]`` gets one appended (it is a target now).
    """
    store = store or TeacherStore()
    settings = {"beam": beam, "alpha": alpha, "max_length": max_length}
    key = cache_key(teacher, src, "seq_kd", settings)
    found = store.load(key)
    if found is not None:
        return found["targets"].clone(), {"key": key, "cached": True, "seconds": 0.0, **settings}
    teacher.eval()
    start = time.perf_counter()
    ids = decode(teacher, src, beam=beam, alpha=alpha, max_len=max_length - 2, batch_size=batch_size).cpu()
    seconds = time.perf_counter() - start
    ids = torch.where(ids == EOS_ID, PAD_ID, ids)  # EOS re-added below at each row's end
    lengths = (ids != PAD_ID).sum(1)
    targets = torch.zeros((len(ids), int(lengths.max()) + 2), dtype=torch.int64)
    targets[:, 0] = BOS_ID
    for i, n in enumerate(lengths.tolist()):
        row = ids[i][ids[i] != PAD_ID][: max_length - 2]
        targets[i, 1 : 1 + len(row)] = row
        targets[i, 1 + len(row)] = EOS_ID
    store.save(key, {"targets": targets}, {"kind": "seq_kd", "rows": len(targets), "seconds": round(seconds, 2), **settings})
    return targets, {"key": key, "cached": False, "seconds": round(seconds, 2), **settings}
