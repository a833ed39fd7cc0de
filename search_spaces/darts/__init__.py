"""The DARTS CNN search space (Liu et al., ICLR 2019): its ops, genotype, supernet, networks and published cells."""
from search_spaces.darts.genotype import Genotype, parse_genotype
from search_spaces.darts.genotypes import GENOTYPES, PUBLISHED_ERROR, get_genotype
from search_spaces.darts.network import NetworkCIFAR, NetworkImageNet
from search_spaces.darts.ops import OPS, PRIMITIVES
from search_spaces.darts.space import DartsSpace, derive_genotype
from search_spaces.darts.supernet import DartsSupernet, SearchCell, build_supernet

__all__ = ["DartsSpace", "DartsSupernet", "GENOTYPES", "Genotype", "NetworkCIFAR", "NetworkImageNet", "OPS",
           "PRIMITIVES", "PUBLISHED_ERROR", "SearchCell", "build_supernet", "derive_genotype", "get_genotype",
           "parse_genotype"]
