"""Discrete strategies (ask and tell over genotypes): the interface in ``base``, one module per algorithm."""
