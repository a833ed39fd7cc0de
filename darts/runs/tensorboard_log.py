"""One TensorBoard writer per run directory, with namespaced tags (search/..., arch/..., final/..., result/...),
cell diagrams, the HParams plugin's data and a custom-scalars layout."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summaries

from darts.diagrams import CellGraph, draw_genotype, to_image
from darts.supernet import OpSet


class _Discard:
    """Stands in for a SummaryWriter (and its file writer) where nothing is written: every call does nothing."""

    def __getattr__(self, name: str) -> Any:
        return self if name == "file_writer" else (lambda *args, **kwargs: None)


class TensorBoardLog:
    """Scalars, arch-weight heatmaps, cell diagrams and genotype text for one run directory (None: a log that writes
    nothing, for the ranks of a distributed run other than 0)."""

    def __init__(self, run_dir: str | Path | None):
        self.enabled = run_dir is not None
        self.writer = SummaryWriter(log_dir=str(run_dir)) if self.enabled else _Discard()

    def scalars(self, prefix: str, values: dict[str, float | torch.Tensor], step: int) -> None:
        """Log ``prefix/name`` for every value (tensors are synced here, once per call)."""
        for name, value in values.items():
            self.writer.add_scalar(f"{prefix}/{name}", float(value), step)

    def heatmap(self, tag: str, weights: torch.Tensor, names: tuple[tuple[str, ...], ...], step: int) -> None:
        """Op weights [E, K] as an image: one row per edge, one column per op (``names[e]``: edge e's ops; where the
        edges search different ops, each row names its own), the colours centred on the uniform weight 1/K and
        stretched to the largest deviation from it, so that a young search's small differences show."""
        if not self.enabled:
            return
        w = weights.detach().float().cpu().numpy()
        uniform, spread = 1.0 / w.shape[1], max(float(np.abs(w - 1.0 / w.shape[1]).max()), 1e-6)
        same = len(set(names)) == 1
        columns = names[0] if same else [f"op {k}" for k in range(w.shape[1])]
        rows = [f"edge {e}" + ("" if same else f": {', '.join(row)}") for e, row in enumerate(names)]
        fig = Figure(figsize=(1.0 + 0.6 * w.shape[1] + 0.06 * max(map(len, rows)), 0.9 + 0.3 * w.shape[0]), dpi=80)
        canvas = FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        im = ax.imshow(w, cmap="coolwarm", norm=Normalize(uniform - spread, uniform + spread), aspect="auto")
        ax.set_xticks(range(w.shape[1]), columns, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(w.shape[0]), rows, fontsize=7)
        fig.colorbar(im, ax=ax)
        fig.tight_layout()
        canvas.draw()
        image = np.asarray(canvas.buffer_rgba())[..., :3]  # (H, W, 3)
        self.writer.add_image(tag, image, step, dataformats="HWC")

    def cells(self, prefix: str, graphs: dict[str, CellGraph], step: int) -> None:
        """The diagram of each cell type as an image ``<prefix>_<cell type>``."""
        if not self.enabled:
            return
        for cell_type, graph in graphs.items():
            self.writer.add_image(f"{prefix}_{cell_type}", to_image(draw_genotype({cell_type: graph})), step,
                                  dataformats="HWC")

    def result(self, settings: dict[str, Any], metrics: dict[str, float]) -> None:
        """A finished run's final metrics as ``result/<name>`` scalars, and the HParams plugin's record of the run
        (its settings and those metrics), so that the HParams tab compares every run under a log directory."""
        plain = {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in settings.items()}
        for summary in hparams_summaries(plain, {f"result/{name}": 0.0 for name in metrics}):
            self.writer.file_writer.add_summary(summary)
        self.scalars("result", metrics, 0)

    def layout(self, charts: dict[str, dict[str, list]]) -> None:
        """A custom-scalars layout: category -> chart title -> ["Multiline", [tag regexes]]."""
        self.writer.add_custom_scalars(charts)

    def arch(self, op_weights: dict[str, torch.Tensor], ops: OpSet, graphs: dict[str, CellGraph], step: int) -> None:
        """A search's architecture at ``step``: per cell type the op-weight heatmap (``arch/<cell>``), each edge's
        op weights as scalars (``arch/weights_<cell>/edgeNN/<op>``, one multi-line chart per edge in the custom-scalars
        layout of ``arch_layout``) and the diagram of the derived cell (``arch/diagram_<cell>``)."""
        for cell_type, w in op_weights.items():
            self.heatmap(f"arch/{cell_type}", w, ops.edges[cell_type], step)
            values = w.detach().float().cpu().tolist()  # [E][K]
            for e, row in enumerate(values):
                for op, value in zip(ops.names(cell_type, e), row):
                    self.writer.add_scalar(f"arch/weights_{cell_type}/edge{e:02d}/{op}", value, step)
        self.cells("arch/diagram", graphs, step)

    def arch_layout(self, cell_types: tuple[str, ...], num_edges: int) -> None:
        """The custom-scalars layout of ``arch``: per cell type a category with one multi-line chart per edge."""
        self.layout({f"op weights, {cell_type} cell": {
            f"edge {e:02d}": ["Multiline", [rf"arch/weights_{cell_type}/edge{e:02d}/.*"]] for e in range(num_edges)}
            for cell_type in cell_types})

    def text(self, tag: str, text: str, step: int) -> None:
        """A text entry (rendered as markdown: wrapped in a code span)."""
        self.writer.add_text(tag, f"`{text}`", step)

    def flush(self) -> None:
        """Write pending events to disk."""
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()
