"""Speech synthesizers run as programs: espeak-ng and flite, one word per call, WAV on stdout.

A voice is ``"espeak:<variant>"`` (an espeak-ng voice variant such as ``m3``, ``f2`` or ``klatt4``,
spoken with one of :data:`ESPEAK_ACCENTS` drawn per utterance) or ``"flite:<voice>"`` (``kal``,
``kal16``, ``awb``, ``rms``, ``slt``). Speed and pitch are factors around each voice's own
(1.0 = the synthesizer's default): espeak-ng takes words per minute (``-s``, default 175) and a pitch
of 0–99 (``-p``, default 50); flite a duration stretch (``1 / speed``) and a mean F0 in Hz.

Calls cost about 10 ms (espeak-ng) and 20 ms (flite) per word on one core. A missing program raises
:class:`~distil.errors.DataError` with the ``apt-get install`` line.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from distil.data.audio.wav import Waveform, read_wav
from distil.errors import DataError

#: espeak-ng's English accents (one is drawn per utterance of an espeak voice).
ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029")

#: flite voices and the nominal mean F0 (Hz) that a pitch factor of 1.0 maps to.
FLITE_F0 = {"kal": 100.0, "kal16": 100.0, "awb": 110.0, "rms": 100.0, "slt": 170.0}

#: Seconds before a synthesizer call is given up (a word takes milliseconds).
TIMEOUT_S = 30


@dataclass(frozen=True)
class Program:
    """A synthesizer program: its executable, the Debian package that installs it, and its version flag."""

    name: str
    executable: str
    package: str
    version_args: tuple[str, ...]

    def path(self) -> str:
        found = shutil.which(self.executable)
        if found is None:
            raise DataError(
                f"the speech synthesizer {self.executable!r} ({self.name}) is not installed; the spoken_words dataset needs it. "
                f"Install it with: sudo apt-get install {self.package}"
            )
        return found

    def version(self) -> str:
        """The program's version line (part of the data cache's key: another version speaks differently)."""
        try:  # flite prints its version and exits with status 1
            done = subprocess.run([self.path(), *self.version_args], capture_output=True, timeout=TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise DataError(f"{self.executable} failed to run ({err}); reinstall it with: sudo apt-get install {self.package}") from None
        text = (done.stdout or done.stderr).decode("utf-8", "replace")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        line = next((line for line in lines if "version" in line.lower() or "eSpeak" in line), lines[0] if lines else "unknown")
        return line.split("  Data at")[0].strip()  # espeak-ng appends its data folder: not part of the version


ESPEAK = Program("eSpeak NG", "espeak-ng", "espeak-ng", ("--version",))
FLITE = Program("CMU Flite", "flite", "flite", ("--version",))


def _run(command: list[str], program: Program) -> subprocess.CompletedProcess[bytes]:
    try:
        done = subprocess.run(command, capture_output=True, timeout=TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise DataError(f"{program.executable} failed to run ({err}); reinstall it with: sudo apt-get install {program.package}") from None
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise DataError(f"{' '.join(command[:3])} ... exited with status {done.returncode}: {message[-1] if message else 'no message'}")
    return done


def espeak(word: str, variant: str, speed: float, pitch: float, accent: str) -> Waveform:
    """``word`` spoken by espeak-ng voice ``accent+variant`` (22.05 kHz)."""
    wpm = str(round(175 * speed))
    level = str(min(99, max(0, round(50 * pitch))))
    done = _run([ESPEAK.path(), "-v", f"{accent}+{variant}", "-s", wpm, "-p", level, "--stdout", word], ESPEAK)
    return read_wav(done.stdout, what=f"espeak-ng's output for {word!r}")


def flite(word: str, voice: str, speed: float, pitch: float, accent: str) -> Waveform:
    """``word`` spoken by flite voice ``voice`` (8 kHz for kal, 16 kHz for the others); ``accent`` is unused (one per voice)."""
    f0 = FLITE_F0.get(voice, 100.0) * pitch
    command = [FLITE.path(), "-voice", voice, "--setf", f"duration_stretch={1 / speed:.4f}", "--setf", f"int_f0_target_mean={f0:.1f}"]
    done = _run([*command, "-t", word, "-o", "/dev/stdout"], FLITE)
    return read_wav(done.stdout, what=f"flite's output for {word!r}")


#: synthesizer name → (program, speak function).
SYNTHESIZERS: dict[str, tuple[Program, Callable[[str, str, float, float, str], Waveform]]] = {
    "espeak": (ESPEAK, espeak),
    "flite": (FLITE, flite),
}


def parse_voice(spec: str) -> tuple[str, str]:
    """``"espeak:m3"`` → ``("espeak", "m3")``; DataError naming the forms accepted."""
    synth, _, name = str(spec).partition(":")
    if synth not in SYNTHESIZERS or not name:
        raise DataError(f"voice {spec!r} is not 'espeak:<variant>' or 'flite:<voice>'")
    if synth == "flite" and name not in FLITE_F0:
        raise DataError(f"flite voice {name!r} is not one of {', '.join(FLITE_F0)}")
    return synth, name


def speak(voice: str, word: str, speed: float, pitch: float, accent: str) -> Waveform:
    """``word`` in ``voice`` (``"espeak:m3"``, ``"flite:slt"``) at ``speed`` × and ``pitch`` ×."""
    synth, name = parse_voice(voice)
    return SYNTHESIZERS[synth][1](word, name, speed, pitch, accent)


def versions(voices: list[str]) -> dict[str, str]:
    """The version line of each synthesizer ``voices`` use (raises the install message when one is missing)."""
    used = sorted({parse_voice(v)[0] for v in voices})
    return {synth: SYNTHESIZERS[synth][0].version() for synth in used}
