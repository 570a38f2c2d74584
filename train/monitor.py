"""What a training run reports (rank 0 only): a progress bar, metrics.jsonl, TensorBoard scalars.

- Progress bar (tqdm, stderr): loss, lr, samples/s and the ETA.
- `OUTPUT/metrics.jsonl`: one JSON line every `log_every` steps (and for each evaluation).
- `OUTPUT/tensorboard/`: the same scalars when the `tensorboard` package is installed.
- `OUTPUT/learning_curve.png`: closed-loop success and average max overlap against samples seen, redrawn
  after every evaluation (`eval_every`), when matplotlib is installed.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from edgeact.train.train_config import TrainConfig

log = logging.getLogger(__name__)


class Monitor:
    def __init__(self, output: Path, cfg: TrainConfig, start_step: int, global_batch: int, *, enabled: bool):
        self.enabled = enabled
        self.cfg = cfg
        self.global_batch = global_batch
        self._t_last = time.perf_counter()
        self._step_last = start_step
        self._rate: float | None = None  # samples/s, smoothed
        self._bar = None
        self._tb = None
        self._jsonl = None
        if not enabled:
            return
        output.mkdir(parents=True, exist_ok=True)
        self._jsonl = open(output / "metrics.jsonl", "a")  # noqa: SIM115 (closed in close())
        if cfg.progress:
            from tqdm import tqdm

            self._bar = tqdm(
                total=cfg.steps, initial=start_step, unit="step", dynamic_ncols=True, smoothing=0.1
            )
        self._tb = _tensorboard(output / "tensorboard")

    def update(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if self._bar is not None:
            self._bar.update(step - self._bar.n)
        if step % self.cfg.log_every and step != self.cfg.steps:
            return
        dt = now - self._t_last
        if dt > 0 and step > self._step_last:
            self._rate = (step - self._step_last) * self.global_batch / dt
        self._t_last, self._step_last = now, step
        row = dict(metrics)
        if self._rate is not None:
            row["samples_per_s"] = self._rate
        if self._bar is not None:
            shown = {k: row[k] for k in ("loss", "lr", "samples_per_s") if k in row}
            self._bar.set_postfix(
                {k.replace("samples_per_s", "samples/s"): f"{v:.3g}" for k, v in shown.items()}, refresh=False
            )
        self.scalars(step, {f"train/{k}": v for k, v in row.items()})
        log.info("step %d: %s", step, " ".join(f"{k}={v:.4g}" for k, v in row.items()))

    def scalars(self, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if self._jsonl is not None:
            self._jsonl.write(json.dumps({"step": step, "time": time.time(), **values}) + "\n")
            self._jsonl.flush()
        if self._tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)):
                    self._tb.add_scalar(k, v, step)

    def curve(self) -> Path | None:
        """Redraw `learning_curve.png` from the evaluations in metrics.jsonl; None without matplotlib."""
        if not self.enabled or self._jsonl is None:
            return None
        path = Path(self._jsonl.name)
        return write_learning_curve(path, path.with_name("learning_curve.png"), self.global_batch)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._jsonl is not None:
            self._jsonl.close()
        if self._tb is not None:
            self._tb.close()


def _tensorboard(folder: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.debug("tensorboard is not installed; scalars go to metrics.jsonl only")
        return None
    return SummaryWriter(str(folder))


def write_learning_curve(metrics: Path, png: Path, global_batch: int) -> Path | None:
    """Plot eval/success_rate and eval/avg_max_overlap from `metrics` (jsonl) against samples seen."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.debug("matplotlib is not installed; no learning curve")
        return None
    rows = []
    for line in metrics.read_text().splitlines():
        row = json.loads(line)
        if "eval/success_rate" in row:
            rows.append(row)
    if not rows:
        return None
    samples = [r["step"] * global_batch for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(samples, [r["eval/success_rate"] for r in rows], "o-", label="success rate")
    ax.plot(samples, [r["eval/avg_max_overlap"] for r in rows], "s-", label="average max overlap")
    ax.set_xlabel("samples seen")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    n = rows[-1].get("eval/n_episodes", "?")
    ax.set_title(f"closed-loop evaluation ({n} episodes each)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    tmp = png.with_name(f".{png.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(png)
    return png
