"""Files written whole or not at all, and content hashes: what every stage that writes a file shares."""
from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class FileFormatError(ValueError):
    """A file that cannot be read or parsed; the message names the file."""


@contextmanager
def atomic_path(path: str | os.PathLike, durable: bool = False) -> Iterator[Path]:
    """A fresh temporary name beside `path` (same suffix, so writers pick the same format) for the block to write;
    renamed onto `path` when the block ends cleanly (fsync'd first when durable), removed when it raises. Readers
    see the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{path.suffix}")
    try:
        yield tmp
        if durable:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_figure(fig, path: str | os.PathLike, dpi: int = 100, **savefig) -> Path:
    """Write a matplotlib figure atomically (format from the suffix, folders made) and close it."""
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, **savefig)
    finally:
        plt.close(fig)
    return Path(path)


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FileFormatError(f"{path}: cannot read ({exc.strerror})") from exc


def read_yaml(path: str | os.PathLike) -> Any:
    """yaml.safe_load a file, with the file name in read and parse errors (FileFormatError)."""
    import yaml

    path = Path(path)
    text = _text(path)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise FileFormatError(f"{path}: not valid YAML: {exc}") from exc


def read_json(path: str | os.PathLike) -> Any:
    """json.loads a file, with the file name (and line:column of a syntax error) in errors (FileFormatError)."""
    import json

    path = Path(path)
    text = _text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise FileFormatError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg})") from exc
