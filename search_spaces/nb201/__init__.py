"""The NAS-Bench-201 search space (Dong & Yang, ICLR 2020): its ops, genotype, supernet, network and table."""
from search_spaces.nb201.genotype import EDGES, NUM_EDGES, NUM_NODES, PRIMITIVES, NB201Genotype, format_arch, parse_arch
from search_spaces.nb201.network import TinyNetwork, build_network
from search_spaces.nb201.ops import OPS, nb201_ops
from search_spaces.nb201.space import NB201Space
from search_spaces.nb201.supernet import NB201Supernet, SearchCell, build_supernet
from search_spaces.nb201.table import NB201Benchmark

__all__ = ["EDGES", "NB201Benchmark", "NB201Genotype", "NB201Space", "NB201Supernet", "NUM_EDGES", "NUM_NODES", "OPS",
           "PRIMITIVES", "SearchCell", "TinyNetwork", "build_network", "build_supernet", "format_arch", "nb201_ops",
           "parse_arch"]
