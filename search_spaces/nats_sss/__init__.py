"""The NATS-Bench size search space (Dong et al., TPAMI 2021): its channel genotypes, its network and the space."""
from search_spaces.nats_sss.genotype import CANDIDATES, NUM_LAYERS, ChannelGenotype, format_channels, parse_channels
from search_spaces.nats_sss.network import CELL, DynamicShapeTinyNet
from search_spaces.nats_sss.space import NATSSizeSpace

__all__ = ["CANDIDATES", "CELL", "ChannelGenotype", "DynamicShapeTinyNet", "NATSSizeSpace", "NUM_LAYERS",
           "format_channels", "parse_channels"]
