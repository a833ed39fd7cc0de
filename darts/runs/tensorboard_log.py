"""One TensorBoard writer per run directory, with namespaced tags (search/..., arch/..., final/...)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch.utils.tensorboard import SummaryWriter


class TensorBoardLog:
    """Scalars, arch-weight heatmaps and genotype text for one run directory."""

    def __init__(self, run_dir: str | Path):
        self.writer = SummaryWriter(log_dir=str(run_dir))

    def scalars(self, prefix: str, values: dict[str, float | torch.Tensor], step: int) -> None:
        """Log ``prefix/name`` for every value (tensors are synced here, once per call)."""
        for name, value in values.items():
            self.writer.add_scalar(f"{prefix}/{name}", float(value), step)

    def heatmap(self, tag: str, weights: torch.Tensor, primitives: tuple[str, ...], step: int) -> None:
        """Op weights [E, K] as an image: one row per edge, one column per op (drawn without pyplot's global state)."""
        w = weights.detach().float().cpu().numpy()
        fig = Figure(figsize=(1.0 + 0.6 * w.shape[1], 0.9 + 0.3 * w.shape[0]), dpi=80)
        canvas = FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        im = ax.imshow(w, cmap="viridis", vmin=0.0, vmax=max(float(w.max()), 1e-6), aspect="auto")
        ax.set_xticks(range(len(primitives)), primitives, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(w.shape[0]), [f"edge {e}" for e in range(w.shape[0])], fontsize=7)
        fig.colorbar(im, ax=ax)
        fig.tight_layout()
        canvas.draw()
        image = np.asarray(canvas.buffer_rgba())[..., :3]  # (H, W, 3)
        self.writer.add_image(tag, image, step, dataformats="HWC")

    def text(self, tag: str, text: str, step: int) -> None:
        """A text entry (rendered as markdown: wrapped in a code span)."""
        self.writer.add_text(tag, f"`{text}`", step)

    def flush(self) -> None:
        """Write pending events to disk."""
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()
