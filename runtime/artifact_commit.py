"""Replacing a policy artifact's two files (`policy.onnx` + `policy.json`) as one change (docs/export.md).

Two renames cannot be atomic together, so the change is journaled the way a database journals a commit:
1. the new model and sidecar are written in full to temporary files beside the old ones (fsync'd),
2. a journal `.policy.json.commit` naming both temporary files is renamed into place: the commit point,
3. model, then sidecar, are renamed over the old files; the journal is removed.
A kill before step 2 leaves the old pair untouched (the next export removes the temporary files). A kill after
it leaves a journal, and whoever comes next (the next `export-policy` or the next `load_artifact`) rolls the
change forward: both files are complete, only the renames are left. A reader that may not write the folder
reads the pair the journal describes without moving anything. Files get the mode the umask allows (mkstemp's
0600 would hide them from a robot service running as another user). Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = ["commit_pair", "finish_interrupted_export", "journal_path", "umask_mode", "write_temp"]


class CommitError(OSError):
    """A journal that cannot be read or completed; the message names it and says what to do."""


def journal_path(json_path: Path) -> Path:
    return json_path.parent / f".{json_path.name}.commit"


def umask_mode(mode: int = 0o666) -> int:
    """`mode` less the process umask: what `open()` would give a new file."""
    try:  # Linux 4.7+: read it without changing it (os.umask would, for a moment, for every thread)
        with open("/proc/self/status") as f:
            mask = next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        mask = os.umask(0o022)
        os.umask(mask)
    return mode & ~mask


def write_temp(folder: Path, name: str, data: bytes) -> Path:
    """`data` in a new temporary file `.<name>.<pid>.<random>.tmp` in `folder`, fsync'd, umask mode."""
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.{os.getpid()}.", suffix=".tmp", dir=folder)
    try:
        os.fchmod(fd, umask_mode())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot fsync a directory; the renames are still in order
        pass
    finally:
        os.close(fd)


def _remove_dead_temps(folder: Path, names: tuple[str, ...]) -> None:
    """Temporary files of earlier exports killed before their commit point (their process is gone)."""
    for name in names:
        for tmp in folder.glob(f".{name}.*.tmp"):
            pid = tmp.name[len(name) + 2 :].split(".", 1)[0]
            if pid.isdigit() and _alive(int(pid)):
                continue
            tmp.unlink(missing_ok=True)
            log.warning("removed %s, left by an export that was killed before it finished", tmp)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid != os.getpid()


def commit_pair(model_path: Path, model_bytes: bytes, json_path: Path, sidecar_bytes: bytes) -> None:
    """Replace `model_path` and `json_path` by the given contents as one change (see the module docstring)."""
    folder = model_path.parent
    finish_interrupted_export(json_path)
    _remove_dead_temps(folder, (model_path.name, json_path.name, f"{json_path.name}.commit"))
    tmps: list[Path] = []
    try:
        tmps.append(write_temp(folder, model_path.name, model_bytes))
        tmps.append(write_temp(folder, json_path.name, sidecar_bytes))
        pending = {"model": [tmps[0].name, model_path.name], "sidecar": [tmps[1].name, json_path.name]}
        tmps.append(write_temp(folder, f"{json_path.name}.commit", json.dumps(pending).encode()))
        os.replace(tmps[2], journal_path(json_path))  # the commit point
    except OSError:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(folder)
    try:
        os.replace(tmps[0], model_path)
    except OSError:  # nothing replaced yet: take the change back
        for tmp in tmps[:2]:
            tmp.unlink(missing_ok=True)
        journal_path(json_path).unlink(missing_ok=True)
        raise
    finish_interrupted_export(json_path, quiet=True)


def finish_interrupted_export(json_path: Path, *, quiet: bool = False) -> Path:
    """Roll forward a change that `commit_pair` began (a journal beside `json_path`); returns the sidecar
    to read: `json_path`, or, when this process may not write the folder, the sidecar the journal names."""
    journal = journal_path(json_path)
    try:
        text = journal.read_text()
    except FileNotFoundError:
        return json_path
    except OSError as err:
        raise CommitError(f"{journal}: cannot read this export journal ({err.strerror})") from err
    steps = _journal_steps(journal, text)
    folder = json_path.parent
    try:
        for tmp, dest in steps:
            # FileNotFoundError: done already (by us before a kill, or by a concurrent reader)
            with contextlib.suppress(FileNotFoundError):
                os.replace(folder / tmp, folder / dest)
        _fsync_dir(folder)
        journal.unlink(missing_ok=True)
        _fsync_dir(folder)
    except PermissionError:
        (model_tmp, _), (side_tmp, _) = steps
        log.warning(
            "%s: an interrupted export is pending and this user cannot complete it; "
            "reading the pair it describes (run export-policy or load the policy as the folder's owner)",
            journal,
        )
        if not (folder / model_tmp).exists() and (folder / side_tmp).exists():
            return folder / side_tmp  # the new model is in place, its sidecar not yet
        return json_path
    if not quiet:
        log.warning("%s: completed an export that was interrupted between its renames", json_path)
    return json_path


def _journal_steps(journal: Path, text: str) -> list[tuple[str, str]]:
    try:
        doc = json.loads(text)
        steps = [(str(doc[k][0]), str(doc[k][1])) for k in ("model", "sidecar")]
    except (ValueError, KeyError, IndexError, TypeError, RecursionError) as err:
        raise CommitError(
            f"{journal}: not a valid export journal; remove it and export again ({type(err).__name__})"
        ) from err
    if any("/" in name or name in ("", ".", "..") for step in steps for name in step):
        raise CommitError(f"{journal}: names a file outside its folder; remove it and export again")
    return steps
