"""The NATS-Bench size search space (Dong, Liu, Musial and Gabrys, TPAMI 2021, sec. 3; D-X-Y/NATS-Bench): the output
channels of the 5 layers of ``DynamicShapeTinyNet``, each one of 8, 16, ..., 64 (8^5 = 32,768 architectures), around a
fixed NB201 cell.

To the strategies a layer is an "edge" and its channel count an "op": ``primitives`` are the 8 candidates as strings,
``one_hot`` gives each layer's candidate index, ``derive`` the largest weight's candidate per layer, so every discrete
strategy (random, evolution, BANANAS, PSO, Hyperband, BOHB) searches it unchanged. It has no weight-sharing supernet
here (NATS-Bench searched it with channel-masking supernets, TAS/FBNetV2/TuNAS, exps/NATS-algos/search-size.py): a
gradient strategy, or ``evaluator=supernet``, is refused in one line.
"""
from __future__ import annotations

import torch

from darts.context import Context
from darts.diagrams import CellGraph
from darts.supernet import Mixing, Supernet, SupernetOptions
from search_spaces.base import SearchSpace, randint
from search_spaces.nats_sss.genotype import CANDIDATES, NUM_LAYERS, PRIMITIVES, ChannelGenotype, parse_channels
from search_spaces.nats_sss.network import DynamicShapeTinyNet

STRIDED = (1, 3)  # the layers that are stride-2 residual blocks (InferTinyCellNet.py layer_reductions)


def as_genotype(genotype: ChannelGenotype | str) -> ChannelGenotype:
    """A genotype from its channel string or channel sequence."""
    return parse_channels(genotype) if isinstance(genotype, str) else ChannelGenotype(genotype)


class NATSSizeSpace(SearchSpace):
    """The NATS-Bench size space: a genotype is the channels of the 5 layers (``ChannelGenotype``)."""

    primitives = PRIMITIVES
    cell_types = ("channels",)
    num_edges = NUM_LAYERS

    def make_supernet(self, num_classes: int, context: Context, options: SupernetOptions) -> Supernet:
        """Refused: this space has no weight-sharing supernet."""
        raise ValueError("search_space=nats_sss has no weight-sharing supernet: search it with a discrete strategy "
                         "(strategy=random|evolution|bo|pso|hyperband|bohb) and evaluator=tabular|train|zero_cost")

    def network_sizes(self) -> dict[str, int]:
        """None: the genotype's channels size the network."""
        return {}

    def build_network(self, genotype: ChannelGenotype | str, num_classes: int) -> DynamicShapeTinyNet:
        """The benchmark's network of these channels, returning logits."""
        return DynamicShapeTinyNet(as_genotype(genotype), num_classes)

    def derive(self, weights: dict[str, torch.Tensor]) -> ChannelGenotype:
        """Per layer, the channel count of largest weight."""
        w = weights["channels"]
        if tuple(w.shape) != (NUM_LAYERS, len(CANDIDATES)):
            raise ValueError(f"NATS size-space weights must be [{NUM_LAYERS}, {len(CANDIDATES)}], got {list(w.shape)}")
        return ChannelGenotype(CANDIDATES[int(k)] for k in w.detach().float().cpu().argmax(dim=-1))

    def to_text(self, genotype: ChannelGenotype | str) -> str:
        """The benchmark's string, e.g. ``'8:16:24:32:64'``."""
        return str(as_genotype(genotype))

    def parse(self, text: str) -> ChannelGenotype:
        """Parse a channel string."""
        return parse_channels(text)

    def to_json(self, genotype: ChannelGenotype | str) -> dict:
        """``{"channels": [c1, ..., c5]}``."""
        return {"channels": list(as_genotype(genotype))}

    def from_json(self, data: dict) -> ChannelGenotype:
        """The genotype of ``{"channels": [c1, ..., c5]}``."""
        if not isinstance(data, dict) or not isinstance(data.get("channels"), list):
            raise ValueError(f'a NATS size-space genotype JSON is {{"channels": [...]}}, got {str(data)[:80]}')
        return ChannelGenotype(data["channels"])

    def sample(self, generator: torch.Generator) -> ChannelGenotype:
        """A candidate per layer, uniformly (exps/NATS-algos/regularized_ea.py ``random_size_func``)."""
        return ChannelGenotype(CANDIDATES[randint(generator, len(CANDIDATES))] for _ in range(NUM_LAYERS))

    def mutate(self, genotype: ChannelGenotype | str, generator: torch.Generator) -> ChannelGenotype:
        """One layer, drawn uniformly, gets another channel count, drawn uniformly among the other 7
        (regularized_ea.py ``mutate_size_func`` draws among all 8, so 1 in 8 of its children equal the parent)."""
        channels = list(as_genotype(genotype))
        layer = randint(generator, NUM_LAYERS)
        others = [c for c in CANDIDATES if c != channels[layer]]
        channels[layer] = others[randint(generator, len(others))]
        return ChannelGenotype(channels)

    def cell_graphs(self, genotype: ChannelGenotype | str) -> dict[str, CellGraph]:
        """The network as a chain: the stem, then each layer labelled with its block and output channels."""
        channels = as_genotype(genotype)
        names = ("stem", *(f"layer {i + 1}" for i in range(NUM_LAYERS)))
        edges = tuple((names[i], names[i + 1], f"{'residual' if i in STRIDED else 'cell'} {c}")
                      for i, c in enumerate(channels))
        return {"channels": CellGraph(names[:1], names[1:], edges)}

    def one_hot(self, genotype: ChannelGenotype | str) -> dict[str, Mixing]:
        """Each layer's candidate index."""
        return {"channels": Mixing(index=[CANDIDATES.index(c) for c in as_genotype(genotype)])}
