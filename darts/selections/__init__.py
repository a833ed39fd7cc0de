"""Selections choose the genotype a gradient search reports (``selection=<name>``, conf/selection/):

- ``Argmax`` (``base.py``, the default ``argmax``): the strategy's own genotype, no selection phase;
- ``DartsPT`` (``darts_pt.py``, ``darts_pt``): DARTS-PT's perturbation-based selection with fine-tuning (Wang et
  al., ICLR 2021), on a partly discretised supernet (``projection.py``);
- ``DartsES`` (``darts_es.py``, ``darts_es``): R-DARTS's early stopping on the dominant arch-Hessian eigenvalue
  (Zela et al., ICLR 2020), which ``darts.selections.hessian`` measures.

The interface is ``base.Selection``.
"""
from darts.selections.base import Argmax, EarlyStop, Selection
from darts.selections.darts_es import DartsES
from darts.selections.darts_pt import DartsPT

__all__ = ["Argmax", "DartsES", "DartsPT", "EarlyStop", "Selection"]
