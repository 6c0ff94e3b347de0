"""``spoken_words``: a keyword-spotting set spoken by speech synthesizers, with held-out voices for test.

No spoken-word corpus ships in a package, but speech synthesizers do. Each utterance is one word
(:data:`CLASS_NAMES`: the ten digits, ten commands as in Speech Commands (Warden 2018,
arXiv:1804.03209), and ``unknown``: one of :data:`UNKNOWN_WORDS`), spoken by espeak-ng or flite with a
seeded draw of

* the voice (from the split's voices; an espeak voice also draws one of seven English accents),
* speed (× 0.8–1.25) and pitch (× 0.75–1.35),
* loudness (peak 0.25–1.0), time shift (the word, trimmed of silence, placed uniformly in the clip),
* background noise: white, pink or brown, at an SNR uniform in ``snr_db`` (over the word's samples),

resampled to 16 kHz and cut to ``seconds`` (1 s). **Speaker-independent test:** the test split is
spoken only by :data:`TEST_VOICES` — espeak-ng variants and the flite voice ``slt`` that no training
utterance uses (the validation split is carved from training utterances, so it shares their voices).

Inputs are log-mel spectrograms (:class:`~distil.data.audio.features.LogMel`: 40 × 51 for 1 s), so
every image model, the teacher cache, compress and ONNX export take them as one-channel images.

Cost and cache: a word costs ~10 ms (espeak-ng) or ~20 ms (flite) of one core, so the default
21 × (40 + 15) = 1155 utterances take ~20 s, once: the waveforms (int16) are kept in
``<data cache>/spoken_words/<key>.safetensors`` (``$DISTIL_DATA_CACHE`` or ``~/.cache/distil/data``),
written atomically; the key is the sha256 of every setting and of the synthesizers' versions. The
features are computed from the waveforms at each load (a fraction of a second), so changing
``n_mels`` reuses the waveforms.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from distil.data.audio.features import LogMel
from distil.data.audio.synth import ESPEAK_ACCENTS, parse_voice, speak, versions
from distil.data.audio.wav import resample
from distil.data.raw import RawData
from distil.data.registry import no_path, register_dataset
from distil.data.text.cache import data_cache_dir
from distil.errors import DataError
from distil.weights import save_tensors

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
COMMANDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN_WORDS = ("bed", "bird", "cat", "dog", "happy", "house", "tree", "wow", "marvin", "sheila",
                 "learn", "follow", "forward", "backward", "visual", "apple", "water", "green", "music", "table")  # fmt: skip
UNKNOWN = "unknown"
CLASS_NAMES = (*DIGITS, *COMMANDS, UNKNOWN)

_ESPEAK_TRAIN = ("m1", "m2", "m3", "m4", "m5", "m6", "f1", "f2", "f3", "klatt", "klatt2", "klatt3",
                 "Andy", "Annie", "adam", "benjamin", "caleb", "david", "edward", "john", "michael", "paul", "robert", "steph", "linda", "quincy")  # fmt: skip
_ESPEAK_TEST = ("m7", "m8", "f4", "f5", "klatt4", "klatt5", "norbert", "travis", "belinda", "victor")
#: Voices of the training (and validation) utterances.
TRAIN_VOICES = tuple(f"espeak:{v}" for v in _ESPEAK_TRAIN) + ("flite:kal", "flite:kal16", "flite:awb", "flite:rms")
#: Voices of the test utterances: never heard in training.
TEST_VOICES = tuple(f"espeak:{v}" for v in _ESPEAK_TEST) + ("flite:slt",)

SAMPLE_RATE = 16000
SPEED = (0.8, 1.25)
PITCH = (0.75, 1.35)
PEAK = (0.25, 1.0)
NOISE_COLOURS = ("white", "pink", "brown")
#: Changes whenever the same settings would give other waveforms: old cache files are then not read.
CACHE_VERSION = "spoken-words-v1"


@dataclass(frozen=True)
class Utterance:
    """Everything drawn for one clip (from its own seeded generator, so clips can be made in any order)."""

    label: int
    word: str
    voice: str
    accent: str
    speed: float
    pitch: float
    peak: float
    shift: float  # where the word starts, as a fraction of the room left in the clip
    snr_db: float | None
    colour: str
    noise_seed: int


@register_dataset(
    "spoken_words",
    "spoken digits + commands + unknown (21 classes), synthesized by espeak-ng/flite, test on unseen voices; log-mel 40x51 "
    "(options: per_class, test_per_class, snr_db, n_mels, seconds, generation_seed, train_voices, test_voices)",
)
def load_spoken_words(
    path: Path | None,
    *,
    per_class: int = 40,
    test_per_class: int = 15,
    snr_db: Sequence[float] | None = (5.0, 30.0),
    n_mels: int = 40,
    seconds: float = 1.0,
    generation_seed: int = 0,
    train_voices: Sequence[str] | None = None,
    test_voices: Sequence[str] | None = None,
) -> RawData:
    """Synthesize (or read from the cache) the clips, then compute their log-mel features.

    ``per_class`` / ``test_per_class``: utterances of each class in the training (before the
    validation carve) and test splits. ``test_per_class: 0`` makes no test split (``test_x`` is
    ``None``): for a *transfer set* of extra clips by the training voices alone (``strategy.transfer:
    {name: spoken_words, options: {per_class: 800, test_per_class: 0, generation_seed: 1}}``), whose
    labels are dropped; as labelled data the loader would then carve the test split from the training
    voices, which is no longer speaker-independent. ``snr_db``: ``[low, high]`` of the background noise's SNR, or
    ``null`` for clean clips. ``train_voices`` / ``test_voices``: voice lists (``"espeak:m3"``,
    ``"flite:slt"``); they must not share a voice.
    """
    no_path("spoken_words", path, "it is synthesized")
    settings = _settings(per_class, test_per_class, snr_db, n_mels, seconds, generation_seed, train_voices, test_voices)
    waves, labels, split = cached_waveforms(settings)
    front_end = front_end_for(n_mels)
    features = front_end(torch.from_numpy(waves.astype(np.float32) / 32768.0)).numpy()
    train, test = split == 0, split == 1
    held_out = settings["test_per_class"] > 0  # no test clips: no test split (a transfer set)
    return RawData(
        train_x=features[train],
        train_y=labels[train],
        test_x=features[test] if held_out else None,
        test_y=labels[test] if held_out else None,
        class_names=CLASS_NAMES,
        input_shape=tuple(features.shape[1:]),
        source=(
            f"generated: spoken_words seed={generation_seed} {int(train.sum())} train / {int(test.sum())} test utterances, "
            + (f"test voices {', '.join(settings['test_voices'])}" if held_out else "no held-out voices (a test split carved from these is not speaker-independent)")
            + f"; log-mel {json.dumps(front_end.settings(), sort_keys=True)}"
        ),
        held_out_test=True,  # the test voices: never part of a transfer set
    )


def front_end_for(n_mels: int = 40) -> LogMel:
    """The features ``spoken_words`` computes (the server rebuilds them from the run's ``data.options``)."""
    return LogMel(sample_rate=SAMPLE_RATE, n_mels=n_mels)


def _settings(per_class: Any, test_per_class: Any, snr_db: Any, n_mels: Any, seconds: Any, seed: Any, train_voices: Any, test_voices: Any) -> dict[str, Any]:
    for name, value, low in (("per_class", per_class, 2), ("test_per_class", test_per_class, 0), ("n_mels", n_mels, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise DataError(f"spoken_words option {name} must be an int >= {low}, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise DataError(f"spoken_words option generation_seed must be an int, got {seed!r}")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0.25 <= seconds <= 10:
        raise DataError(f"spoken_words option seconds must be a number in [0.25, 10], got {seconds!r}")
    if snr_db is not None:
        if isinstance(snr_db, str) or not isinstance(snr_db, Sequence) or len(snr_db) != 2 or not all(isinstance(v, int | float) for v in snr_db) or snr_db[0] > snr_db[1]:
            raise DataError(f"spoken_words option snr_db must be [low, high] in dB (low <= high) or null for no noise, got {snr_db!r}")
        snr_db = [float(v) for v in snr_db]
    voices = {}
    for name, given, default in (("train_voices", train_voices, TRAIN_VOICES), ("test_voices", test_voices, TEST_VOICES)):
        chosen = list(default if given is None else given)
        if not chosen or isinstance(given, str):
            raise DataError(f"spoken_words option {name} must be a non-empty list of voices such as 'espeak:m3' or 'flite:slt', got {given!r}")
        for voice in chosen:
            parse_voice(voice)
        voices[name] = chosen
    shared = sorted(set(voices["train_voices"]) & set(voices["test_voices"]))
    if shared:
        raise DataError(f"spoken_words: train_voices and test_voices share {shared}; the test voices must be unseen in training")
    return {"per_class": per_class, "test_per_class": test_per_class, "snr_db": snr_db, "seconds": float(seconds), "seed": seed, **voices}


def cache_file(settings: dict[str, Any], synth_versions: dict[str, str]) -> Path:
    """``<data cache>/spoken_words/<sha256 of the settings and synthesizer versions>.safetensors``."""
    key = json.dumps({"version": CACHE_VERSION, "settings": settings, "synthesizers": synth_versions, "rate": SAMPLE_RATE}, sort_keys=True)
    return data_cache_dir() / "spoken_words" / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.safetensors"


def cached_waveforms(settings: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """int16 waveforms ``(N, samples)``, labels and split (0 train, 1 test) from the cache, or synthesized and cached."""
    synth_versions = versions(settings["train_voices"] + settings["test_voices"])  # raises the install line first
    file = cache_file(settings, synth_versions)
    if file.is_file():
        try:
            t = load_file(str(file))
            return t["waves"].numpy(), t["labels"].numpy(), t["split"].numpy()
        except (SafetensorError, OSError, KeyError) as err:
            warnings.warn(f"spoken_words cache {file} is unreadable ({err}); synthesizing again", RuntimeWarning, stacklevel=2)
    plan = utterance_plan(settings)
    length = round(settings["seconds"] * SAMPLE_RATE)
    workers = max(1, torch.get_num_threads())
    with ThreadPoolExecutor(max_workers=workers) as pool:  # each call is a subprocess: threads run them side by side
        clips = list(pool.map(lambda u: render(u, length), [u for _, u in plan]))
    waves = np.stack(clips)
    labels = np.array([u.label for _, u in plan], dtype=np.int64)
    split = np.array([s for s, _ in plan], dtype=np.uint8)
    metadata = {"settings": json.dumps(settings, sort_keys=True), "synthesizers": json.dumps(synth_versions), "class_names": json.dumps(CLASS_NAMES)}
    try:
        save_tensors({"waves": torch.from_numpy(waves), "labels": torch.from_numpy(labels), "split": torch.from_numpy(split)}, file, metadata)
    except OSError as err:  # a read-only cache costs the next load time, not this one
        warnings.warn(f"could not cache the spoken_words clips in {file} ({err}); they will be synthesized again", RuntimeWarning, stacklevel=2)
    return waves, labels, split


def utterance_plan(settings: dict[str, Any]) -> list[tuple[int, Utterance]]:
    """(split, utterance) of every clip, train first, class by class; each drawn from its own seeded generator."""
    plan = []
    for split, (count, voices) in enumerate(((settings["per_class"], settings["train_voices"]), (settings["test_per_class"], settings["test_voices"]))):
        for label, name in enumerate(CLASS_NAMES):
            for i in range(count):
                rng = np.random.default_rng([settings["seed"], split, label, i])
                word = str(rng.choice(UNKNOWN_WORDS)) if name == UNKNOWN else name
                voice = voices[(i + label) % len(voices)]  # every voice speaks every class about equally often
                snr = settings["snr_db"]
                plan.append((split, Utterance(
                    label=label, word=word, voice=voice, accent=str(rng.choice(ESPEAK_ACCENTS)),
                    speed=float(rng.uniform(*SPEED)), pitch=float(rng.uniform(*PITCH)), peak=float(rng.uniform(*PEAK)),
                    shift=float(rng.uniform()), snr_db=None if snr is None else float(rng.uniform(*snr)),
                    colour=str(rng.choice(NOISE_COLOURS)), noise_seed=int(rng.integers(2**31)),
                )))  # fmt: skip
    return plan


def render(u: Utterance, length: int) -> np.ndarray:
    """The int16 clip of ``u``: spoken, resampled to 16 kHz, trimmed, scaled, shifted, noise added."""
    wave = speak(u.voice, u.word, u.speed, u.pitch, u.accent)
    word = trim_silence(resample(wave.samples, wave.rate, SAMPLE_RATE))
    if len(word) == 0:
        raise DataError(f"{u.voice} produced silence for {u.word!r}")
    word = word * (u.peak / max(float(np.abs(word).max()), 1e-9))
    if len(word) > length:  # a slow long word: keep its middle
        start = (len(word) - length) // 2
        word = word[start : start + length]
    clip = np.zeros(length, np.float32)
    start = int(u.shift * (length - len(word)))
    clip[start : start + len(word)] = word
    if u.snr_db is not None:
        noise = coloured_noise(length, u.colour, np.random.default_rng(u.noise_seed))
        signal_power = float(np.mean(word.astype(np.float64) ** 2))
        clip += noise * np.float32(np.sqrt(signal_power / 10 ** (u.snr_db / 10)))
    return np.round(np.clip(clip, -1.0, 1.0) * 32767.0).astype(np.int16)


def trim_silence(x: np.ndarray, threshold: float = 0.02) -> np.ndarray:
    """``x`` from the first to the last sample above ``threshold`` × its peak (synthesizers pad with silence)."""
    if len(x) == 0:
        return x
    loud = np.flatnonzero(np.abs(x) > threshold * float(np.abs(x).max()))
    return x[loud[0] : loud[-1] + 1] if len(loud) else x[:0]


def coloured_noise(n: int, colour: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-power noise of ``n`` samples: white (flat), pink (power ∝ 1/f) or brown (∝ 1/f²), shaped in the frequency domain."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spectrum), dtype=np.float64)
    f[0] = 1.0
    exponent = {"white": 0.0, "pink": 0.5, "brown": 1.0}[colour]
    x = np.fft.irfft(spectrum / f**exponent, n)
    return (x / max(float(np.sqrt(np.mean(x**2))), 1e-12)).astype(np.float32)
