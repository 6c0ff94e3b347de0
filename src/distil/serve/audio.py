"""Audio runs in the server: waveforms or WAV uploads in, the run's log-mel features computed here.

A run on an audio dataset (``spoken_words``: its ``config.yaml`` names it; the front end's settings
come from the dataset's options through :func:`~distil.data.audio.spoken_words.front_end_for`) is
served with an :class:`AudioInput`:

* **OIP v2** ``/v2/models/{name}/infer``: input ``waveform``, FP32, shape ``[N, S]``: mono samples in
  [-1, 1] at the run's sample rate (16 kHz), any length ``S`` up to ``max_seconds``;
* **/predict**: a WAV upload (multipart field ``file``, or an ``audio/wav`` body): decoded with the
  standard library, stereo mixed down to mono, resampled to the run's rate
  (:func:`~distil.data.audio.wav.resample`).

Either way each clip is fitted to the training clips' length (zero-padded at the end, or its middle
kept), turned into log-mel features by the same :class:`~distil.data.audio.features.LogMel` that made
the training data, and normalized with the training mean/std; the backend sees ``(N, 1, n_mels,
frames)`` as during training. Bad input answers 4xx JSON and the server stays up: not a WAV (415), no
samples (400), NaN or infinite samples (400), longer than ``max_seconds`` (413).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distil.data.audio.features import LogMel
from distil.data.audio.wav import AudioTooLong, read_wav, resample
from distil.errors import DataError
from distil.serve.images import normalize
from distil.serve.inputs import Batch, Limits
from distil.serve.protocol import InferError

#: Longest clip accepted, in seconds (a longer WAV or waveform answers 413).
DEFAULT_MAX_SECONDS = 30.0


class AudioInput:
    """An FP32 waveform input ``[N, S]`` (OIP) or WAV bytes (``/predict``) → normalized log-mel features."""

    datatype = "FP32"
    kind = "audio"

    def __init__(self, front_end: LogMel, clip_samples: int, mean: tuple[float, ...], std: tuple[float, ...], *, name: str = "waveform", max_seconds: float = DEFAULT_MAX_SECONDS) -> None:
        self.name = name
        self.front_end = front_end
        self.clip_samples = int(clip_samples)
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.max_seconds = float(max_seconds)
        self.shape: tuple[int, ...] = (1, front_end.n_mels, front_end.frames(self.clip_samples))  # what the model takes

    @property
    def sample_rate(self) -> int:
        return self.front_end.sample_rate

    @property
    def description(self) -> dict[str, Any]:
        return {"sample_rate": self.sample_rate, "clip_samples": self.clip_samples, "max_seconds": self.max_seconds, "log_mel": self.front_end.settings()}

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": [-1, -1], "parameters": {"sample_rate": self.sample_rate, "clip_samples": self.clip_samples}}

    def probe(self) -> Batch:
        return self.features([np.zeros(self.clip_samples, np.float32)])

    def from_oip(self, values: np.ndarray | list[bytes], shape: tuple[int, ...], limits: Limits) -> Batch:
        """``[N, S]`` (or ``[S]``) float32 samples at the run's rate."""
        if len(shape) == 1:
            shape = (1, *shape)
        if len(shape) != 2 or not 1 <= shape[0] <= limits.max_batch:
            raise InferError(f"input {self.name!r} has shape {list(shape)}; expected [N, S]: N <= {limits.max_batch} mono waveforms of S samples at {self.sample_rate} Hz")
        assert isinstance(values, np.ndarray)
        rows = values.reshape(shape)
        self._check_length(shape[1], "the waveform")
        return self.features(list(rows))

    def from_wav(self, data: bytes) -> Batch:
        """One WAV file (any PCM rate or channel count) as a batch of one."""
        try:
            wave = read_wav(data, max_seconds=self.max_seconds, what="the upload")
        except AudioTooLong as err:
            raise InferError(str(err), 413) from None
        except DataError as err:
            raise InferError(str(err), 415) from None
        if len(wave.samples) == 0:
            raise InferError("the WAV file has no samples; send at least a few milliseconds of audio")
        return self.features([resample(wave.samples, wave.rate, self.sample_rate)])

    def _check_length(self, samples: int, what: str) -> None:
        if samples == 0:
            raise InferError(f"{what} has no samples; send at least a few milliseconds of audio")
        if samples > self.max_seconds * self.sample_rate:
            raise InferError(f"{what} is {samples / self.sample_rate:.1f} s long; at most {self.max_seconds:g} s are accepted", 413)

    def features(self, clips: list[np.ndarray]) -> Batch:
        """Mono clips at the run's rate → fitted to the clip length → log-mel → normalized ``(N, 1, n_mels, frames)``."""
        fitted = np.zeros((len(clips), self.clip_samples), np.float32)
        for i, clip in enumerate(clips):
            clip = np.asarray(clip, np.float32)
            if not np.isfinite(clip).all():
                raise InferError(f"waveform {i} contains NaN or infinite samples; send finite values in [-1, 1]")
            if len(clip) > self.clip_samples:  # the training clips hold one word: keep the middle
                start = (len(clip) - self.clip_samples) // 2
                clip = clip[start : start + self.clip_samples]
            fitted[i, : len(clip)] = clip
        raw = self.front_end(torch.from_numpy(fitted)).numpy()
        return Batch(normalize(raw, self.mean, self.std))


def audio_input(run: Path, data: dict[str, Any]) -> AudioInput | None:
    """The audio input of run directory ``run`` (its ``summary.json`` ``data``), or None when it is not an audio run."""
    config_file = run / "config.yaml"
    if not config_file.is_file():
        return None
    import yaml

    try:
        raw = yaml.safe_load(config_file.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    data_cfg = raw.get("data") or {}
    if data_cfg.get("name") != "spoken_words":
        return None
    from distil.data.audio.spoken_words import SAMPLE_RATE, front_end_for

    options = data_cfg.get("options") or {}
    front_end = front_end_for(int(options.get("n_mels", 40)))
    clip = round(float(options.get("seconds", 1.0)) * SAMPLE_RATE)
    made = AudioInput(front_end, clip, tuple(data["mean"]), tuple(data["std"]))
    if list(made.shape) != list(data["input_shape"]):
        raise DataError(f"{run}: the audio front end gives features {made.shape}, but the run was trained on {data['input_shape']}: {json.dumps(options)}")
    return made
