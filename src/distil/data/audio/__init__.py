"""Audio: WAV bytes ↔ mono waveforms (:mod:`.wav`), the log-mel front end (:mod:`.features`), speech
synthesizers (:mod:`.synth`), the ``spoken_words`` source (:mod:`.spoken_words`) and SpecAugment
masking (:mod:`.spec_augment`)."""

from distil.data.audio.features import LogMel
from distil.data.audio.wav import AudioTooLong, Waveform, read_wav, resample, write_wav

__all__ = ["AudioTooLong", "LogMel", "Waveform", "read_wav", "resample", "write_wav"]
