"""Atomic downloads: a file appears under its final name only once it is complete and verified."""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path

#: Seconds without progress before a download is given up.
TIMEOUT_S = 30


def fetch(url: str, dest: Path, verify: Callable[[bytes], None]) -> None:
    """Download ``url`` to ``dest``: into a temporary file beside it, ``verify(contents)``, then rename.

    ``verify`` raises (DataError) to reject the contents. Network and file errors are raised as
    OSError (``urllib.error.URLError`` is one) for the caller to explain. On any failure nothing is
    left behind, so a half-written file is never mistaken for the real one.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            shutil.copyfileobj(response, out)
        verify(temp.read_bytes())
        os.replace(temp, dest)  # atomic within one file system
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
