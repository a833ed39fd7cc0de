"""Deploying a retrained cell: pruning (``prune``), int8 quantisation (``quantize``) and export (``export``), each a
run directory of its own (``steps``)."""
