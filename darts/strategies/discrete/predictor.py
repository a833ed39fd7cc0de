"""BANANAS's neural predictor: an ensemble of feed-forward networks trained as one batched model.

White, Neiswanger and Savani, "BANANAS: Bayesian Optimization with Neural Architectures for Neural
Architecture Search" (AAAI 2021), sec. 4-5: an ensemble of ``members`` fully connected networks of
``layers`` ReLU layers of ``width`` units, each trained from its own random initialisation with Adam
on the mean absolute error; the spread of their predictions is the model's uncertainty. The official
code (naszilla/naszilla ``meta_neural_net.py`` ``MetaNeuralnet``, a Keras ``Dense`` stack; settings in
``params.py`` ``meta_neuralnet_params``) fits each member separately. Here the members are the leading
dimension E of every weight, so one ``bmm`` per layer runs all of them, and the gradient of the
summed per-member losses is written by hand (no autograd graph, one flat parameter buffer, one Adam
update per step): small networks on a CPU are dominated by per-op overhead, and this is about 3x
faster than autograd with ``torch.optim.Adam``. Each member's loss depends on its own weights only and
Adam is elementwise, so this equals training the members one by one. Every random draw (Glorot-uniform
initialisation, Keras ``Dense``'s default; minibatch shuffles) comes from a caller's seeded generator.
"""
from __future__ import annotations

import math

import torch

BETAS, EPS = (0.9, 0.99), 1e-7  # MetaNeuralnet.fit: Adam(lr, beta_1=.9, beta_2=.99); Keras's default epsilon 1e-7


class MLPEnsemble:
    """``members`` independent MLPs ``in_dim -> width (x layers, ReLU) -> 1``, stored as batched tensors.

    Args:
        in_dim: length D of an encoding.
        members: ensemble size E.
        layers: hidden layers per member.
        width: units per hidden layer.
        generator: seeds the Glorot-uniform initialisation (zero biases, as Keras ``Dense``).
    """

    def __init__(self, in_dim: int, members: int, layers: int, width: int, generator: torch.Generator):
        for name, value in (("in_dim", in_dim), ("members", members), ("layers", layers), ("width", width)):
            if value < 1:
                raise ValueError(f"{name}={value} must be >= 1")
        dims = [in_dim] + [width] * layers + [1]
        shapes = [(members, i, o) for i, o in zip(dims[:-1], dims[1:])] + [(members, 1, o) for o in dims[1:]]
        sizes = [math.prod(shape) for shape in shapes]
        self.params = torch.zeros(sum(sizes))  # [P]: every weight, then every bias (zero, as Keras)
        self.grads = torch.zeros_like(self.params)  # [P]
        views = [t.view(shape) for t, shape in zip(self.params.split(sizes), shapes)]
        self.weights, self.biases = views[:len(dims) - 1], views[len(dims) - 1:]  # [E, in, out], [E, 1, out]
        grads = [t.view(shape) for t, shape in zip(self.grads.split(sizes), shapes)]
        self.grad_weights, self.grad_biases = grads[:len(dims) - 1], grads[len(dims) - 1:]
        for w, (_, fan_in, fan_out) in zip(self.weights, shapes):
            bound = math.sqrt(6.0 / (fan_in + fan_out))  # Glorot uniform
            w.copy_((torch.rand(w.shape, generator=generator) * 2 - 1) * bound)

    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The input x [E, N, D], every hidden activation [E, N, width] and the output [E, N, 1]."""
        outputs = [x]
        for l, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = torch.baddbmm(b, x, w)  # [E, N, out]
            outputs.append(x.relu_() if l < len(self.weights) - 1 else x)
        return outputs

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Each member's prediction [E, N] of the rows x [N, D]."""
        return self._forward(x.expand(len(self.weights[0]), *x.shape))[-1].squeeze(-1)

    def _gradient(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Write into ``grads`` the gradient of sum_e mean_b |f_e(x[e, b]) - y[e, b]| (x [E, B, D], y [E, B])."""
        outputs = self._forward(x)
        g = ((outputs[-1].squeeze(-1) - y).sign() / y.shape[1]).unsqueeze(-1)  # [E, B, 1]: d loss / d output
        for l in reversed(range(len(self.weights))):
            torch.bmm(outputs[l].transpose(1, 2), g, out=self.grad_weights[l])  # [E, in, out]
            torch.sum(g, dim=1, keepdim=True, out=self.grad_biases[l])  # [E, 1, out]
            if l > 0:
                g = torch.bmm(g, self.weights[l].transpose(1, 2)) * (outputs[l] > 0)  # [E, B, in] through the ReLU

    def fit(self, x: torch.Tensor, y: torch.Tensor, epochs: int, batch_size: int, lr: float,
            generator: torch.Generator) -> None:
        """Train every member on (x [N, D], y [N]) with Adam on the mean absolute error, each member with its own
        shuffle of the N rows per epoch (Keras ``fit``: shuffle, last batch partial)."""
        members, n = len(self.weights[0]), len(y)
        m, v = torch.zeros_like(self.params), torch.zeros_like(self.params)  # Adam's moments [P]
        t = 0
        for _ in range(epochs):
            order = torch.rand(members, n, generator=generator).argsort(dim=1)  # [E, N]
            for start in range(0, n, batch_size):
                rows = order[:, start:start + batch_size]  # [E, B]
                self._gradient(x[rows], y[rows])
                t += 1  # Adam as Keras writes it: lr_t = lr sqrt(1 - b2^t) / (1 - b1^t), p -= lr_t m / (sqrt(v) + eps)
                m.lerp_(self.grads, 1 - BETAS[0])
                v.mul_(BETAS[1]).addcmul_(self.grads, self.grads, value=1 - BETAS[1])
                step = lr * math.sqrt(1 - BETAS[1] ** t) / (1 - BETAS[0] ** t)
                # sqrt of a denormal v is ~30x slower on a CPU; flooring v at eps^2 changes sqrt(v) + eps by < eps
                self.params.addcdiv_(m, v.clamp_min(EPS ** 2).sqrt_().add_(EPS), value=-step)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The flat parameter buffer (a copy)."""
        return {"params": self.params.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore ``state_dict`` (same sizes)."""
        if state["params"].shape != self.params.shape:
            raise ValueError(f"predictor of {state['params'].numel()} parameters, expected {self.params.numel()}")
        self.params.copy_(state["params"])
