"""Atomic output: a file either holds its complete content or does not exist; a directory of
outputs is replaced whole, and only when it holds nothing but those outputs."""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    A crash or kill before the rename leaves at most a ``.*.tmp`` file, never a file under
    the final name that looks complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    tmp.chmod(0o666 & ~_umask())  # an ordinary file once renamed (mkstemp makes it 0600)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=True) + "\n")


def read_json(path: Path, error: type[Exception], not_found: str, redo: str) -> Any:
    """The JSON document at ``path``. A missing file raises ``error("<path> not found:
    <not_found>")``, a truncated or corrupt one ``error("<path> is truncated or corrupt
    (<reason>): <redo>")`` -- one line naming the file and what to do."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as err:
        raise error(f"{path} not found: {not_found}") from err
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        reason = (
            f"{err.msg} at line {err.lineno} column {err.colno}"
            if isinstance(err, json.JSONDecodeError)
            else "not UTF-8 text"
        )
        raise error(f"{path} is truncated or corrupt ({reason}): {redo}") from err


def sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class ForeignEntryError(Exception):
    """A directory to be replaced holds something its command did not write."""


Owned = Callable[[Path], bool] | Iterable[str]


def _owns(owned: Owned) -> Callable[[Path], bool]:
    if callable(owned):
        return owned
    patterns = tuple(owned)
    return lambda entry: any(fnmatch.fnmatchcase(entry.name, p) for p in patterns)


def check_replaceable(target: str | os.PathLike, owned: Owned) -> None:
    """Raise :class:`ForeignEntryError` unless ``target`` is absent or a directory holding only
    files that ``owned`` accepts (a predicate on the entry, or glob patterns on its name).

    Directories inside ``target`` are never owned: replacing them would delete a whole tree.
    """
    target = Path(target)
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise ForeignEntryError(
            f"{target} exists and is not a directory: move it away or choose another directory"
        )
    if not target.exists():
        return
    accept = _owns(owned)
    for entry in sorted(target.iterdir()):
        real_dir = entry.is_dir() and not entry.is_symlink()
        if real_dir or not accept(entry):
            raise ForeignEntryError(
                f"{target} holds {entry.name!r}, which this command does not write; refusing to "
                "replace it: move that entry away or choose another directory"
            )


@contextlib.contextmanager
def replace_dir(target: str | os.PathLike, owned: Owned) -> Iterator[Path]:
    """Yield a fresh temporary directory beside ``target``; on success it takes ``target``'s
    place whole (the old directory is renamed aside, then removed).

    ``target`` is checked first (:func:`check_replaceable`), before anything is created, and
    again just before the swap. On an exception nothing under ``target`` changes and the
    temporary directory is removed.
    """
    target = Path(target)
    check_replaceable(target, owned)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    tmp.chmod(0o777 & ~_umask())  # an ordinary directory once swapped in (mkdtemp makes it 0700)
    try:
        yield tmp
        check_replaceable(target, owned)  # nothing foreign arrived meanwhile
        _fsync_tree(tmp)
        if not target.exists():
            os.rename(tmp, target)
            return
        aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=tmp.parent))
        os.rename(target, aside / target.name)
        try:
            os.rename(tmp, target)
        except BaseException:
            os.rename(aside / target.name, target)
            aside.rmdir()
            raise
        shutil.rmtree(aside)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _fsync_tree(root: Path) -> None:
    for path in root.iterdir():
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())


def _umask() -> int:
    """The process's file creation mask (reading it means setting it: set it straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
