"""Data: the datasets (``datasets``, ``torchvision_sets``), device-resident loading (``loaders``), the search split
(``search_split``) and tabular benchmarks (``tabular``)."""
