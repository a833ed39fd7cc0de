"""Published cells of the DARTS CNN search space, copied as data from the official code.

Pairs and concat forms are exactly as in each source file (lists there, ``range(2, 6)`` where the
authors pasted a genotype printed by their search code). GDAS's file stores a weight per pair; the
weights are dropped here, the ops and inputs are unchanged.
"""

from __future__ import annotations

from search_spaces.darts.genotype import Genotype

# NASNet-A (Zoph et al., CVPR 2018), 5 intermediate nodes; DARTS cnn/genotypes.py (also in
# PC-DARTS genotypes.py and P-DARTS genotypes.py, identical).
NASNet = Genotype(
    normal=[
        ("sep_conv_5x5", 1), ("sep_conv_3x3", 0),
        ("sep_conv_5x5", 0), ("sep_conv_3x3", 0),
        ("avg_pool_3x3", 1), ("skip_connect", 0),
        ("avg_pool_3x3", 0), ("avg_pool_3x3", 0),
        ("sep_conv_3x3", 1), ("skip_connect", 1),
    ],
    normal_concat=[2, 3, 4, 5, 6],
    reduce=[
        ("sep_conv_5x5", 1), ("sep_conv_7x7", 0),
        ("max_pool_3x3", 1), ("sep_conv_7x7", 0),
        ("avg_pool_3x3", 1), ("sep_conv_5x5", 0),
        ("skip_connect", 3), ("avg_pool_3x3", 2),
        ("sep_conv_3x3", 2), ("max_pool_3x3", 1),
    ],
    reduce_concat=[4, 5, 6],
)

# AmoebaNet (Real et al., AAAI 2019), 5 intermediate nodes; DARTS cnn/genotypes.py (identical in
# PC-DARTS and P-DARTS genotypes.py).
AmoebaNet = Genotype(
    normal=[
        ("avg_pool_3x3", 0), ("max_pool_3x3", 1),
        ("sep_conv_3x3", 0), ("sep_conv_5x5", 2),
        ("sep_conv_3x3", 0), ("avg_pool_3x3", 3),
        ("sep_conv_3x3", 1), ("skip_connect", 1),
        ("skip_connect", 0), ("avg_pool_3x3", 1),
    ],
    normal_concat=[4, 5, 6],
    reduce=[
        ("avg_pool_3x3", 0), ("sep_conv_3x3", 1),
        ("max_pool_3x3", 0), ("sep_conv_7x7", 2),
        ("sep_conv_7x7", 0), ("avg_pool_3x3", 1),
        ("max_pool_3x3", 0), ("max_pool_3x3", 1),
        ("conv_7x1_1x7", 0), ("sep_conv_3x3", 5),
    ],
    reduce_concat=[3, 4, 6],
)

# DARTS first order (Liu et al., ICLR 2019); DARTS cnn/genotypes.py DARTS_V1 (same text in
# PC-DARTS and P-DARTS genotypes.py).
DARTS_V1 = Genotype(
    normal=[
        ("sep_conv_3x3", 1), ("sep_conv_3x3", 0),
        ("skip_connect", 0), ("sep_conv_3x3", 1),
        ("skip_connect", 0), ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 0), ("skip_connect", 2),
    ],
    normal_concat=[2, 3, 4, 5],
    reduce=[
        ("max_pool_3x3", 0), ("max_pool_3x3", 1),
        ("skip_connect", 2), ("max_pool_3x3", 0),
        ("max_pool_3x3", 0), ("skip_connect", 2),
        ("skip_connect", 2), ("avg_pool_3x3", 0),
    ],
    reduce_concat=[2, 3, 4, 5],
)

# DARTS second order (Liu et al., ICLR 2019), the paper's CIFAR-10 cell; DARTS cnn/genotypes.py
# DARTS_V2 (where DARTS = DARTS_V2; same text in PC-DARTS and P-DARTS genotypes.py).
DARTS_V2 = Genotype(
    normal=[
        ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 1), ("skip_connect", 0),
        ("skip_connect", 0), ("dil_conv_3x3", 2),
    ],
    normal_concat=[2, 3, 4, 5],
    reduce=[
        ("max_pool_3x3", 0), ("max_pool_3x3", 1),
        ("skip_connect", 2), ("max_pool_3x3", 1),
        ("max_pool_3x3", 0), ("skip_connect", 2),
        ("skip_connect", 2), ("max_pool_3x3", 1),
    ],
    reduce_concat=[2, 3, 4, 5],
)

# PC-DARTS searched on CIFAR-10 (Xu et al., ICLR 2020); PC-DARTS genotypes.py PC_DARTS_cifar
# (the file's PCDARTS alias).
PC_DARTS = Genotype(
    normal=[
        ("sep_conv_3x3", 1), ("skip_connect", 0),
        ("sep_conv_3x3", 0), ("dil_conv_3x3", 1),
        ("sep_conv_5x5", 0), ("sep_conv_3x3", 1),
        ("avg_pool_3x3", 0), ("dil_conv_3x3", 1),
    ],
    normal_concat=range(2, 6),
    reduce=[
        ("sep_conv_5x5", 1), ("max_pool_3x3", 0),
        ("sep_conv_5x5", 1), ("sep_conv_5x5", 2),
        ("sep_conv_3x3", 0), ("sep_conv_3x3", 3),
        ("sep_conv_3x3", 1), ("sep_conv_3x3", 2),
    ],
    reduce_concat=range(2, 6),
)

# PC-DARTS searched on ImageNet (Xu et al., ICLR 2020); PC-DARTS genotypes.py PC_DARTS_image.
PC_DARTS_image = Genotype(
    normal=[
        ("skip_connect", 1), ("sep_conv_3x3", 0),
        ("sep_conv_3x3", 0), ("skip_connect", 1),
        ("sep_conv_3x3", 1), ("sep_conv_3x3", 3),
        ("sep_conv_3x3", 1), ("dil_conv_5x5", 4),
    ],
    normal_concat=range(2, 6),
    reduce=[
        ("sep_conv_3x3", 0), ("skip_connect", 1),
        ("dil_conv_5x5", 2), ("max_pool_3x3", 1),
        ("sep_conv_3x3", 2), ("sep_conv_3x3", 1),
        ("sep_conv_5x5", 0), ("sep_conv_3x3", 3),
    ],
    reduce_concat=range(2, 6),
)

# P-DARTS searched on CIFAR-10 (Chen et al., ICCV 2019); P-DARTS genotypes.py PDARTS. Its README
# says this cell is from one run and the paper's cell from another.
PDARTS = Genotype(
    normal=[
        ("skip_connect", 0), ("dil_conv_3x3", 1),
        ("skip_connect", 0), ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 1), ("sep_conv_3x3", 3),
        ("sep_conv_3x3", 0), ("dil_conv_5x5", 4),
    ],
    normal_concat=range(2, 6),
    reduce=[
        ("avg_pool_3x3", 0), ("sep_conv_5x5", 1),
        ("sep_conv_3x3", 0), ("dil_conv_5x5", 2),
        ("max_pool_3x3", 0), ("dil_conv_3x3", 1),
        ("dil_conv_3x3", 1), ("dil_conv_5x5", 3),
    ],
    reduce_concat=range(2, 6),
)

# GDAS (Dong & Yang, CVPR 2019); D-X-Y/AutoDL-Projects others/GDAS/lib/nas/genotypes.py GDAS_V1,
# per-pair weights dropped. Same cell in lib/nas_infer_model/DXYs/genotypes.py of that repo.
GDAS_V1 = Genotype(
    normal=[
        ("skip_connect", 0), ("skip_connect", 1),
        ("skip_connect", 0), ("sep_conv_5x5", 2),
        ("sep_conv_3x3", 3), ("skip_connect", 0),
        ("sep_conv_5x5", 4), ("sep_conv_3x3", 3),
    ],
    normal_concat=range(2, 6),
    reduce=[
        ("sep_conv_5x5", 0), ("sep_conv_3x3", 1),
        ("sep_conv_5x5", 2), ("sep_conv_5x5", 1),
        ("dil_conv_5x5", 2), ("sep_conv_3x3", 1),
        ("sep_conv_5x5", 0), ("sep_conv_5x5", 1),
    ],
    reduce_concat=range(2, 6),
)

GENOTYPES: dict[str, Genotype] = {
    "NASNet": NASNet,
    "AmoebaNet": AmoebaNet,
    "DARTS_V1": DARTS_V1,
    "DARTS_V2": DARTS_V2,
    "PC_DARTS": PC_DARTS,
    "PC_DARTS_image": PC_DARTS_image,
    "PDARTS": PDARTS,
    "GDAS_V1": GDAS_V1,
}

# name -> (paper, reported CIFAR-10 test error %, reported params in M), for a README table.
# Only numbers checked against a published source are listed (see each comment); P-DARTS is left
# out because its README says the released cell differs from the paper's, GDAS and AmoebaNet
# because their numbers (and, for AmoebaNet, which variant this cell is) could not be checked.
PUBLISHED_ERROR: dict[str, tuple[str, float, float]] = {
    # Zoph et al. 2018, NASNet-A (6 @ 768) + cutout, as quoted in DARTS Table 1 and Cai et al. 2018 Table 1
    "NASNet": ("NASNet-A, Zoph et al., CVPR 2018", 2.65, 3.3),
    # DARTS Table 1 (first order + cutout: 3.00 +/- 0.14); PC-DARTS README table "DARTSV1 | 3.3 | 3.00"
    "DARTS_V1": ("DARTS (first order), Liu et al., ICLR 2019", 3.00, 3.3),
    # DARTS Table 1 (second order + cutout: 2.76 +/- 0.09, as in DARTS README); PC-DARTS README "DARTSV2 | 3.3 | 2.76"
    "DARTS_V2": ("DARTS (second order), Liu et al., ICLR 2019", 2.76, 3.3),
    # PC-DARTS abstract (2.57% on CIFAR10) and README table "PC-DARTS | 3.6 | 2.57"
    "PC_DARTS": ("PC-DARTS, Xu et al., ICLR 2020", 2.57, 3.6),
}


def get_genotype(name: str) -> Genotype:
    """The published genotype called ``name`` (a key of ``GENOTYPES``)."""
    if name not in GENOTYPES:
        raise ValueError(f"unknown genotype {name!r}; valid: {', '.join(GENOTYPES)}")
    return GENOTYPES[name]
