"""DARTS-PT: perturbation-based architecture selection (Wang et al., "Rethinking Architecture Selection in
Differentiable NAS", ICLR 2021, sec. 4 and Algorithm 1; code: ruocwang/darts-pt sota/cnn/projection.py and
nasbench201/projection.py ``pt_project``).

On the trained supernet, edge by edge in random order (``--edge_decision random``), each op of the edge is masked out
of its mixture (its weight set to 0, the others unchanged) and the supernet's accuracy on the arch half measured
(``infer`` in training mode, no gradient); the edge is discretised to the op whose removal leaves the lowest
accuracy (``--proj_crit acc``; or the highest loss), and the supernet is fine-tuned (``--proj_intv`` epochs of the
strategy's own arch and weight steps, a new SGD at a tenth of the search's learning rate) before the next decision.
Each round decides one edge of every cell type. Then, in a space whose nodes keep only some inputs (the DARTS space:
2), a random node per round keeps the inputs whose removal hurts most (``project_edge``): while it has too many,
each remaining input is removed alone (its whole edge zeroed, the node's other inputs present) and the one whose
removal leaves the highest accuracy is dropped. The genotype is derived from the decisions alone.
"""
from __future__ import annotations

from dataclasses import replace

import logging
from typing import Any

import torch
from tqdm import tqdm

from darts.selections.base import Record, Selection
from darts.selections.projection import Projection
from darts.strategies.base import SearchContext, Strategy
from darts.supernet import Mixing
from darts.strategies.bilevel import search_epoch
from darts.training import evaluate
from search_spaces.base import SearchSpace, randint

log = logging.getLogger(__name__)
CRITERIA = ("acc", "loss")


class DartsPT(Selection):
    """Perturbation-based selection with fine-tuning between decisions (module docstring).

    Args:
        interval: fine-tuning epochs between two decisions (exp_scripts/darts-proj-*.sh ``--proj_intv 5``); 0 = none.
        lr: the search's initial weight learning rate; the fine-tuning SGD runs at ``lr * lr_scale``, constant
            (projection.py: ``reset_optimizer(args.learning_rate / 10, ...)``, its scheduler never stepped).
        lr_scale: that factor (0.1).
        momentum, weight_decay, grad_clip: the fine-tuning SGD's (the search's: ``args.momentum`` ...).
        criterion: ``acc`` (the scripts' ``--proj_crit acc``) or ``loss``.
        eval_batches: arch-half batches per evaluation; None = a pass of the search's steps (``infer`` over the
            whole ``valid_queue``).
        seed: seeds the random edge and node order.
    """

    name = "darts_pt"
    distributed = False

    def __init__(self, interval: int = 5, lr: float = 0.025, lr_scale: float = 0.1, momentum: float = 0.9,
                 weight_decay: float = 3e-4, grad_clip: float | None = 5.0, criterion: str = "acc",
                 eval_batches: int | None = None, seed: int = 2):
        if criterion not in CRITERIA:
            raise ValueError(f"selection.criterion={criterion!r} is not valid; choose one of {CRITERIA}")
        for key, value, low in (("interval", interval, 0), ("eval_batches", eval_batches, 1)):
            if value is not None and (not isinstance(value, int) or value < low):
                raise ValueError(f"selection.{key}={value!r} is not valid: an integer >= {low}")
        if not lr * lr_scale > 0:
            raise ValueError(f"selection.lr * selection.lr_scale = {lr * lr_scale} must be > 0")
        self.interval, self.lr, self.momentum, self.weight_decay = interval, lr * lr_scale, momentum, weight_decay
        self.grad_clip, self.criterion, self.eval_batches, self.seed = grad_clip, criterion, eval_batches, seed

    def select(self, strategy: Strategy, space: SearchSpace, context: SearchContext, record: Record) -> Any:
        """Decide every edge (then every node's inputs), fine-tuning in between; the genotype of the decisions."""
        supernet = context.supernet
        proj = Projection(supernet.cell_types, supernet.num_edges, supernet.ops.k,
                          supernet.arch_parameters()[0].device)
        nodes = {t: [group for group in space.input_choices() if len(group[0]) > group[1]] for t in supernet.cell_types}
        rounds = supernet.num_edges + max(len(n) for n in nodes.values())
        generator = torch.Generator().manual_seed(self.seed)
        optimizer = torch.optim.SGD(supernet.weight_parameters(), self.lr, momentum=self.momentum,
                                    weight_decay=self.weight_decay)
        bar = tqdm(total=rounds, desc="DARTS-PT", leave=False, disable=not supernet.context.bars, dynamic_ncols=True)
        for r in range(rounds):
            if r:
                self._tune(strategy, context, optimizer, proj, r)
            for t in supernet.cell_types:
                if r < supernet.num_edges:
                    edges = proj.undecided(t)
                    record(self.decide_op(strategy, context, proj, t, edges[randint(generator, len(edges))]))
                elif nodes[t]:
                    edges, keep = nodes[t].pop(randint(generator, len(nodes[t])))
                    record(self.decide_node(strategy, context, proj, t, list(edges), keep))
            bar.update()
        bar.close()
        return space.derive(proj.fixed_weights())

    def _tune(self, strategy: Strategy, context: SearchContext, optimizer: torch.optim.Optimizer, proj: Projection,
              r: int) -> None:
        """``interval`` epochs of the strategy's search steps on the projected supernet."""
        with proj.applied(context.supernet):
            for epoch in range(self.interval):
                metrics = search_epoch(context.supernet, strategy, context.train_loader, context.valid_loader,
                                       optimizer, self.grad_clip, context.steps, f"DARTS-PT tune {r}.{epoch}")
                log.info("DARTS-PT fine-tuning before decision round %d, epoch %d/%d: train_acc %.2f", r + 1, epoch + 1,
                         self.interval, metrics["acc"])

    def _base(self, strategy: Strategy, proj: Projection) -> dict[str, Mixing]:
        """The mixing evaluations start from: the strategy's op weights (deterministic) with the decisions applied."""
        return {t: Mixing(proj.weights(t, w)) for t, w in strategy.op_weights().items()}

    def _score(self, context: SearchContext, mixing: dict[str, Mixing]) -> float:
        """Accuracy (%) or loss of the supernet under ``mixing`` on the arch half, BN in training mode as ``infer``."""
        context.supernet.train()
        result = evaluate(lambda x: context.supernet(x, mixing), context.valid_loader,
                          self.eval_batches or context.steps, replace(context.supernet.context, progress=False),
                          "DARTS-PT eval")
        return result[self.criterion]

    def decide_op(self, strategy: Strategy, context: SearchContext, proj: Projection, t: str, e: int) -> dict:
        """Fix edge e of cell type t to the op whose removal hurts most (``project_op``: ties keep the first op)."""
        base = self._base(strategy, proj)
        scores = []
        for k in range(proj.num_ops):
            weights = base[t].weights.clone()  # [E, K]
            weights[e, k] = 0.0
            scores.append(self._score(context, {**base, t: Mixing(weights)}))
        pick = min if self.criterion == "acc" else max  # lowest accuracy, highest loss; both keep the first on ties
        best = pick(range(proj.num_ops), key=lambda k: scores[k])
        proj.fix_op(t, e, best)
        names = context.supernet.ops.names(t, e)
        log.info("DARTS-PT: %s edge %d -> %s (%s without each op: %s)", t, e, names[best], self.criterion,
                 ", ".join(f"{n} {s:.4g}" for n, s in zip(names, scores)))
        return {"decision": "op", "cell": t, "edge": e, "op": names[best], "criterion": self.criterion,
                "without": dict(zip(names, scores))}

    def decide_node(self, strategy: Strategy, context: SearchContext, proj: Projection, t: str, edges: list[int],
                     keep: int) -> dict:
        """Keep the ``keep`` inputs of a node whose removal hurts most (``project_edge``): repeatedly drop the edge
        whose removal alone leaves the highest accuracy (lowest loss; ties drop the later edge)."""
        base, kept, dropped = self._base(strategy, proj), list(edges), []
        while len(kept) > keep:
            scores = []
            for e in kept:
                weights = base[t].weights.clone()  # [E, K]
                weights[e] = 0.0
                scores.append(self._score(context, {**base, t: Mixing(weights)}))
            sign = 1 if self.criterion == "acc" else -1
            dropped.append(kept.pop(max(range(len(kept)), key=lambda i: (sign * scores[i], i))))
        proj.remove_edges(t, dropped)
        log.info("DARTS-PT: %s node of edges %s keeps edges %s", t, edges, kept)
        return {"decision": "node", "cell": t, "edges": edges, "kept": kept, "removed": dropped,
                "criterion": self.criterion}
