"""The published DARTS-space cells under their earlier module name (README); they live in ``search_spaces.darts.genotypes``."""
from search_spaces.darts.genotypes import GENOTYPES, PUBLISHED_ERROR, get_genotype

__all__ = ["GENOTYPES", "PUBLISHED_ERROR", "get_genotype"]
