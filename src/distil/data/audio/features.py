"""The audio front end: log-mel spectrograms on torch, computed once when the data load.

For a mono waveform ``x`` at ``sample_rate`` Hz:

    X[f, t]   = Σ_n x[t·hop + n − n_fft/2] · w[n] · e^{−2πi f n / n_fft}   (torch.stft, centred, reflect-padded;
                 w: a Hann window of ``win_length`` samples, zero-padded to ``n_fft``)
    M[m, t]   = Σ_f H[m, f] · |X[f, t]|²                                  (the power spectrum through the mel filters)
    out[m, t] = log(M[m, t] + 1e-6)

``H`` (``n_mels × (n_fft/2 + 1)``) holds triangular filters whose corners are equally spaced on the
HTK mel scale, ``mel(f) = 2595 · log10(1 + f / 700)`` (O'Shaughnessy 1987), between ``fmin`` and
``fmax``: filter ``m`` rises from corner ``m`` to 1 at corner ``m+1`` and falls to 0 at corner ``m+2``
(peak 1, no area normalisation: torchaudio's ``melscale_fbanks(norm=None, mel_scale="htk")``).

The defaults are the keyword-spotting front end of Hello Edge (Zhang et al. 2017, arXiv:1711.07128):
40 features from 30 ms windows every 20 ms, so a 1 s clip at 16 kHz is 40 × 51. Log-mel rather than
its DCT (MFCC): 2-D convolutions do better on the un-decorrelated bands, and one front end serves
every model.

Why torch and not a library: torchaudio does not exist for torch 2.13 here, and librosa would pull
numba and llvmlite (~60 MB) for what is one ``torch.stft`` and one matrix product. On torch the
same code computes the training set (batched, any device) and the server's features, so the two
cannot drift apart. The result is an ``(N, 1, n_mels, frames)`` tensor: to every model, the
teacher cache, compress and the ONNX export, a one-channel image.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from distil.errors import DataError

#: Added to the mel power before the log, so silence is log(1e-6) ≈ −13.8, not −inf.
LOG_FLOOR = 1e-6


def hz_to_mel(f: torch.Tensor | float) -> torch.Tensor:
    """HTK mel scale: ``2595 · log10(1 + f / 700)``."""
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(f, dtype=torch.float64) / 700.0)


def mel_to_hz(m: torch.Tensor) -> torch.Tensor:
    """The inverse: ``700 · (10^(m / 2595) − 1)``."""
    return 700.0 * (torch.pow(10.0, m / 2595.0) - 1.0)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> torch.Tensor:
    """``H``: float32 ``(n_mels, n_fft // 2 + 1)``, triangular filters with peak 1 (module docstring)."""
    freqs = torch.linspace(0.0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    corners = mel_to_hz(torch.linspace(float(hz_to_mel(fmin)), float(hz_to_mel(fmax)), n_mels + 2, dtype=torch.float64))
    low, centre, high = corners[:-2, None], corners[1:-1, None], corners[2:, None]
    rising = (freqs - low) / (centre - low)
    falling = (high - freqs) / (high - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0.0).to(torch.float32)


@dataclass(frozen=True)
class LogMel:
    """Log-mel features of mono waveforms (see the module docstring for the formula)."""

    sample_rate: int = 16000
    n_mels: int = 40
    n_fft: int = 512
    win_length: int = 480
    hop_length: int = 320
    fmin: float = 20.0
    fmax: float | None = None  # None: sample_rate / 2

    def __post_init__(self) -> None:
        for name in ("sample_rate", "n_mels", "n_fft", "win_length", "hop_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DataError(f"log-mel {name} must be a positive integer, got {value!r}")
        if self.win_length > self.n_fft:
            raise DataError(f"log-mel win_length ({self.win_length}) must be at most n_fft ({self.n_fft})")
        top = self.sample_rate / 2 if self.fmax is None else self.fmax
        if not 0 <= self.fmin < top <= self.sample_rate / 2:
            raise DataError(f"log-mel needs 0 <= fmin < fmax <= sample_rate / 2, got fmin={self.fmin}, fmax={top}, sample_rate={self.sample_rate}")

    def frames(self, samples: int) -> int:
        """Frames of a clip of ``samples`` samples (centred STFT: one every hop, plus one)."""
        return 1 + samples // self.hop_length

    def filterbank(self) -> torch.Tensor:
        return mel_filterbank(self.sample_rate, self.n_fft, self.n_mels, self.fmin, self.fmax or self.sample_rate / 2)

    def __call__(self, waves: torch.Tensor, *, chunk: int = 512) -> torch.Tensor:
        """float32 ``(N, 1, n_mels, frames)`` of ``waves`` ``(N, samples)`` (``chunk`` clips at a time)."""
        if waves.dim() != 2 or waves.shape[1] < 2:
            raise DataError(f"log-mel takes waveforms of shape (N, samples) with at least 2 samples, got {tuple(waves.shape)}")
        window = torch.hann_window(self.win_length, periodic=True, dtype=torch.float32, device=waves.device)
        bank = self.filterbank().to(waves.device)
        pad = "reflect" if waves.shape[1] > self.n_fft // 2 else "constant"
        out = []
        for part in waves.to(torch.float32).split(chunk):
            spec = torch.stft(part, self.n_fft, self.hop_length, self.win_length, window, center=True, pad_mode=pad, return_complex=True)
            power = spec.real.square() + spec.imag.square()  # (n, freqs, frames)
            out.append(torch.log(torch.matmul(bank, power) + LOG_FLOOR).unsqueeze(1))
        return torch.cat(out) if out else torch.zeros(0, 1, self.n_mels, self.frames(waves.shape[1]))

    def settings(self) -> dict[str, Any]:
        """The fields as a JSON-able dict (what a run records, and what the server rebuilds it from)."""
        return asdict(self)

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> LogMel:
        try:
            return cls(**settings)
        except TypeError as err:
            raise DataError(f"log-mel settings {settings!r} are not LogMel's fields: {err}") from None


__all__ = ["LOG_FLOOR", "LogMel", "hz_to_mel", "mel_filterbank", "mel_to_hz"]
