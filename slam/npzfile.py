"""Reading the project's .npz files (vocabularies, maps) with one-line errors for broken ones."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from slam.errors import SlamInputError


def read_npz(path: Path, keys: tuple[str, ...], what: str) -> dict[str, np.ndarray]:
    """The named arrays of an .npz archive; a missing, truncated, corrupt or foreign file -> SlamInputError."""
    if not path.is_file():
        raise SlamInputError(f"{what} file not found", path)
    try:
        if not zipfile.is_zipfile(path):
            raise SlamInputError(f"not a {what} file (not an .npz archive; truncated?)", path)
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in keys if k not in archive.files]
            if missing:
                raise SlamInputError(f"not a {what} file (missing {', '.join(missing)})", path)
            return {k: archive[k] for k in keys}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise SlamInputError(f"cannot read {what} (corrupt or truncated: {reason})", path) from None
