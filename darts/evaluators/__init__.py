"""Evaluators score a genotype for a discrete search: a score to maximise and the cost it stands for.

- ``TabularEvaluator`` (``tabular.py``): a tabular benchmark lookup (no data, no training);
- ``TrainEvaluator`` (``train.py``): train the genotype's network from scratch on the weight half of the
  search split, score its accuracy on the validation half;
- ``SupernetEvaluator`` (``supernet.py``): random search with weight sharing (Li and Talwalkar, UAI 2019,
  sec. 4.2): train the supernet on uniformly sampled single paths once, then score each genotype with
  the shared weights;
- ``ZeroCostEvaluator`` (``zero_cost.py``): a zero-cost proxy of the untrained network on one batch (the 13 of
  NASLib: synflow, grad_norm, snip, jacov, naswot, fisher, grasp, plain, epe_nas, zen, l2_norm, flops, params;
  ``darts.evaluators.proxies``).

The interface, with fidelity and cost, is ``base.Evaluator``.
"""
from darts.evaluators.base import Evaluation, Evaluator, candidate_seed
from darts.evaluators.supernet import SupernetEvaluator
from darts.evaluators.tabular import TabularEvaluator
from darts.evaluators.train import TrainEvaluator
from darts.evaluators.zero_cost import ZeroCostEvaluator

__all__ = ["Evaluation", "Evaluator", "SupernetEvaluator", "TabularEvaluator", "TrainEvaluator", "ZeroCostEvaluator",
           "candidate_seed"]
