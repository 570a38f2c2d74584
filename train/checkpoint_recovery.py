"""Putting a run's `checkpoints/` folder right after a kill, at the next start of `train-act` (issue 12).

`save_checkpoint` writes `.tmp-<step>-<pid>/`, renames an existing step folder to `.old-<step>-<pid>/` before
renaming the new one into place, and re-points `last`/`best` through `.last-<pid>`/`.best-<pid>` links. A kill
(SIGKILL, power loss) between those steps leaves:

- `.tmp-*` folders: incomplete or never renamed (up to the size of a checkpoint each): removed;
- `.old-<step>-*` with `<step>` missing (killed between the two renames): renamed back to `<step>`, the
  complete previous version; with `<step>` present it is the leftover of a finished replace: removed;
- `.last-*`/`.best-*` links and `.eval.json.*.tmp` files: removed;
- a dangling `last`: re-pointed at the newest complete step folder (or removed when there is none); a dangling
  `best`: removed.

Names ending in the id of a live process other than this one are left alone (another writer is at work).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

from edgeact.train.checkpoint import BEST, CONFIG_FILE, EVAL_FILE, LAST, MODEL_FILE, STATE_DIR

log = logging.getLogger(__name__)

_TMP = re.compile(r"^\.tmp-(\d+)-(\d+)$")
_OLD = re.compile(r"^\.old-(\d+)-(\d+)$")
_LINK = re.compile(rf"^\.({LAST}|{BEST})-(\d+)$")
_EVAL_TMP = re.compile(rf"^\.{re.escape(EVAL_FILE)}\.(\d+)\.tmp$")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _size_mb(path: Path) -> float:
    total = sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    return total / 1e6


def is_complete(step_dir: Path) -> bool:
    return all(
        (step_dir / name).is_file()
        for name in (CONFIG_FILE, MODEL_FILE, f"{STATE_DIR}/state.json", f"{STATE_DIR}/state.safetensors")
    )


def recover_checkpoints(checkpoints: str | Path) -> list[str]:
    """Clean or repair `checkpoints` (a run's `checkpoints/` folder); returns one line per thing done."""
    root = Path(checkpoints)
    if not root.is_dir():
        return []
    done: list[str] = []
    entries = sorted(root.iterdir())
    for path in entries:  # first put back what a kill between two renames left in `.old-*`
        m = _OLD.match(path.name)
        if not m or _alive(int(m.group(2))):
            continue
        target = root / m.group(1)
        if not target.exists() and is_complete(path):
            os.rename(path, target)
            done.append(f"restored {target.name} from {path.name} (a save was killed between two renames)")
        else:
            mb = _size_mb(path)
            shutil.rmtree(path, ignore_errors=True)
            done.append(f"removed {path.name} (left by a killed save, {mb:.1f} MB)")
    for path in entries:
        m = _TMP.match(path.name) or _LINK.match(path.name)
        if not m or _alive(int(m.group(2))) or not (path.exists() or path.is_symlink()):
            continue
        if path.is_symlink():
            path.unlink()
            done.append(f"removed the link {path.name} (left by a killed save)")
        else:
            mb = _size_mb(path)
            shutil.rmtree(path, ignore_errors=True)
            done.append(f"removed {path.name} (an unfinished checkpoint, {mb:.1f} MB)")
    for step_dir in (p for p in root.iterdir() if p.name.isdigit() and p.is_dir()):
        for tmp in step_dir.iterdir():
            m = _EVAL_TMP.match(tmp.name)
            if m and not _alive(int(m.group(1))):
                tmp.unlink()
                done.append(f"removed {step_dir.name}/{tmp.name} (an unfinished evaluation summary)")
    done += _repair_links(root)
    for line in done:
        log.warning("%s: %s", root, line)
    return done


def _repair_links(root: Path) -> list[str]:
    done = []
    last, best = root / LAST, root / BEST
    if last.is_symlink() and not is_complete(last):
        steps = sorted(p for p in root.iterdir() if p.name.isdigit() and is_complete(p))
        target = os.readlink(last)
        if steps:
            tmp = root / f".{LAST}-{os.getpid()}"
            if tmp.is_symlink():
                tmp.unlink()
            os.symlink(steps[-1].name, tmp)
            os.replace(tmp, last)
            done.append(f"{LAST} named {target}, which is incomplete or missing: now names {steps[-1].name}")
        else:
            last.unlink()
            done.append(f"removed {LAST}: it named {target}, which is missing, and no complete step is left")
    if best.is_symlink() and not is_complete(best):
        target = os.readlink(best)
        best.unlink()
        done.append(f"removed {BEST}: it named {target}, which is incomplete or missing")
    return done
