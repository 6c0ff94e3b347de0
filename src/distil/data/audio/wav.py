"""Waveforms in and out of WAV bytes, mixed down to mono and resampled to one rate.

Reading uses Python's :mod:`wave` (PCM 8/16/24/32-bit integer) and writing 16-bit PCM: enough for
what the synthesizers write and what a browser or ``arecord`` uploads, with no audio library.
(``torchaudio`` has no build for torch 2.13 here; ``soundfile`` would add libsndfile for formats we
do not need.) Resampling is a windowed-sinc filter on torch (:func:`resample`; scipy's
``resample_poly`` would do the same, but ``import scipy.signal`` takes 3–4 s here, on every server start).

Every problem with the bytes raises :class:`~distil.errors.DataError` saying what was expected, so
the data source and the server (which answers it as a 4xx) share one set of checks.
"""

from __future__ import annotations

import io
import math
import wave
from dataclasses import dataclass

import numpy as np
import torch

from distil.errors import DataError


@dataclass(frozen=True, eq=False)
class Waveform:
    """Mono float32 samples in [-1, 1] at ``rate`` Hz."""

    samples: np.ndarray
    rate: int
    channels: int = 1  # how many channels the source had (mixed down to one)

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.rate


def read_wav(data: bytes, *, max_seconds: float | None = None, what: str = "the WAV data") -> Waveform:
    """Decode RIFF/WAVE PCM bytes: channels averaged to mono, integers scaled to [-1, 1].

    ``max_seconds``: a longer file raises :class:`AudioTooLong` before its samples are decoded.
    A header whose frame count is larger than the data (streamed WAVs, as ``espeak-ng --stdout``
    writes) is read up to the data's end.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise DataError(f"{what} is not a WAV file (it does not start with a RIFF/WAVE header); send 16-bit PCM WAV")
    try:
        with wave.open(io.BytesIO(data), "rb") as reader:
            channels, width, rate = reader.getnchannels(), reader.getsampwidth(), reader.getframerate()
            frames = reader.getnframes()
            if rate <= 0 or channels <= 0:
                raise DataError(f"{what} has a sample rate of {rate} Hz and {channels} channels; expected positive values")
            if max_seconds is not None:
                # the header's frame count can overstate (streamed files): bound by the bytes present too
                present = min(frames, (len(data) - 44) // max(1, channels * width))
                if present / rate > max_seconds:
                    raise AudioTooLong(f"{what} is {present / rate:.1f} s long; at most {max_seconds:g} s are accepted")
            raw = reader.readframes(frames)
    except (wave.Error, EOFError) as err:
        raise DataError(f"{what} is not a PCM WAV file that can be read ({err}); send 16-bit PCM WAV") from None
    return Waveform(_to_float(raw, width, channels, what), rate, channels)


class AudioTooLong(DataError):
    """The audio is longer than the limit (the server answers 413)."""


def _to_float(raw: bytes, width: int, channels: int, what: str) -> np.ndarray:
    usable = len(raw) - len(raw) % (width * channels)
    raw = raw[:usable]
    if width == 1:  # 8-bit WAV is unsigned
        x = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        x = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        x = (np.where(v >= 1 << 23, v - (1 << 24), v)).astype(np.float32) / float(1 << 23)
    elif width == 4:
        x = np.frombuffer(raw, "<i4").astype(np.float32) / float(1 << 31)
    else:
        raise DataError(f"{what} has {8 * width}-bit samples; expected 8, 16, 24 or 32-bit integer PCM")
    return x.reshape(-1, channels).mean(axis=1, dtype=np.float32) if channels > 1 else x


def write_wav(samples: np.ndarray, rate: int) -> bytes:
    """Mono float samples (clipped to [-1, 1]) as 16-bit PCM WAV bytes."""
    pcm = np.round(np.clip(np.asarray(samples, np.float32), -1.0, 1.0) * 32767.0).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(int(rate))
        writer.writeframes(pcm.tobytes())
    return out.getvalue()


def resample(samples: np.ndarray, rate: int, target: int, *, zeros: int = 6, rolloff: float = 0.99) -> np.ndarray:
    """``samples`` at ``rate`` Hz resampled to ``target`` Hz (float32; unchanged when the rates agree).

    Band-limited interpolation (Smith & Gossett 1984) with a Hann-windowed sinc, as torchaudio's
    ``resample`` (``sinc_interp_hann``): with ``rate/target`` reduced by their gcd to ``p/q``
    (22050 → 16000 is 441/320), output ``j`` of every block of ``q`` is

        y[j] = Σ_k x[k] · c · sinc(c·(k − j·p/q)) · cos²(π·c·(k − j·p/q) / (2·zeros)),   |c·(k − j·p/q)| ≤ zeros,

    ``c = rolloff · min(p, q) / p`` (the cut-off below the lower Nyquist frequency), computed as one
    strided ``conv1d`` with ``q`` kernels. ``ceil(len · q / p)`` samples come out.
    """
    samples = np.asarray(samples, np.float32)
    if rate == target:
        return samples
    if len(samples) == 0:
        return np.zeros(0, np.float32)
    g = math.gcd(int(rate), int(target))
    p, q = int(rate) // g, int(target) // g
    base = min(p, q) * rolloff
    width = math.ceil(zeros * p / base)
    offsets = torch.arange(-width, width + p, dtype=torch.float64) / p
    t = (torch.arange(0, -q, -1, dtype=torch.float64)[:, None] / q + offsets[None, :]) * base
    t = t.clamp(-zeros, zeros)
    window = torch.cos(t * math.pi / zeros / 2) ** 2
    t = t * math.pi
    kernels = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / t) * window * (base / p)
    x = torch.nn.functional.pad(torch.from_numpy(samples).double()[None, None], (width, width + p))
    out = torch.nn.functional.conv1d(x, kernels[:, None, :], stride=p)  # (1, q, blocks)
    return out[0].t().reshape(-1)[: math.ceil(len(samples) * q / p)].float().numpy()
