"""Hypergradients of the validation loss for continuous training hyperparameters: one-step unrolled (learning rate and
weight decay), implicit differentiation with a Neumann series (per-layer weight decay) and hypergradient descent on the
learning rate; a run binds one to its weights and optimizer and wraps each weight step in its ``update``."""
from darts.hypergradients.base import Hypergradient
from darts.hypergradients.descent import HypergradientDescent
from darts.hypergradients.implicit import Implicit
from darts.hypergradients.unrolled import Unrolled

__all__ = ["Hypergradient", "HypergradientDescent", "Implicit", "Unrolled"]
