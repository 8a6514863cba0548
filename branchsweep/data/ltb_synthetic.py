"""``ltb-synthetic``: the controlled regression tasks of Learning to Branch (Section 4.1, Eq. 8).

Every task maps one shared input ``Z ∈ R^{input_dim}`` to ``T ∈ R^{output_dim}``::

    T_{r,s} = c_r · activation_r[(B + δ_s) Z] / φ

* ``B`` (``output_dim × input_dim``) is shared by *all* tasks, ``δ_s`` is task-specific noise, so the
  tasks built with the same activation ``r`` differ only by ``δ_s`` and are related by construction;
* ``B ~ N(0, 10)`` and ``δ_s ~ N(0, 2)`` with the second argument read as the **variance** (standard
  deviations √10 and √2): the usual ``N(μ, σ²)`` notation, also that of GradNorm (Chen et al. 2018),
  whose construction Eq. 8 follows. The task noise is then √(2/10) ≈ 0.45 of the shared matrix (read as
  standard deviations it would be 0.2), and two tasks of one activation have pre-activations with
  correlation 10/12 ≈ 0.83 — related, but not copies;
* ``φ = input_dim`` (the paper's normalisation by the input size; option ``normalize="input_dim"``,
  the default: Eq. 8 as written). The activations then give targets of very different scales: with
  the default ``Z`` (below) the target std is ≈ 0.087 (``square``), 0.018 (``bent``), 0.0035 (``sin``,
  ``cos``) and 0.002 (``sinc``), so ``square`` dominates equally weighted L2 losses. This is also what
  makes Figure 3's grouping arise under Eq. 8 in the paper's network, where a task owns only a bias:
  tasks that pick the same last-block node predict the same vector up to that bias, so tasks whose
  targets differ in scale by 5–40× cannot share a leaf, while tasks of one activation (same scale,
  related maps) can. ``normalize="activation_std"`` is a named variant: ``φ_r`` = the standard
  deviation of ``activation_r`` over the pre-activation distribution (estimated on a fixed probe),
  which gives every activation unit-variance targets while keeping the multipliers ``c_r`` (setting
  (b) stays a pure scale difference);
* ``c_r`` is an output multiplier per activation (setting (b) of Figure 3: ``sin`` with 1, 2, 3);
* the paper does not say how ``Z`` is drawn nor its scale. The network is given a standard-normal
  ``x ∈ R^{input_dim}`` and Eq. 8 uses ``Z = input_std · x / √input_dim`` (unit expected norm for
  ``input_std = 1``, the default), so the pre-activation ``u = (B + δ_s) Z`` has variance
  ``input_std² · (10 + 2)`` per entry: the activations are far from linear (sin wraps about once)
  without the targets degenerating into noise, as they would with ``Z ~ N(0, I)`` (pre-activation std
  ≈ 49). ``Z``'s scale sets the ratio of the target scales above: at ``input_std = 0.3`` (pre-activation
  std ≈ 1) ``bent`` and ``square`` targets have similar scales (std 0.005 / 0.008) and the search merges
  them (seed 0 of Figure 3(a): ARI 0.47, against 1.0 at the default). Feeding the standardised ``x``
  rather than the tiny ``Z`` only rescales the first layer and keeps the MLP's default init trainable.

Activations (element-wise): ``sin``, ``cos``, ``square`` (``u²``), ``bent`` (bent identity
``(√(u²+1) − 1)/2 + u``) and ``sinc`` (unnormalised ``sin(u)/u``, 1 at 0).

Task names are ``<activation>_<s>`` (``bent_0`` … ``bent_4``) or, when the scales are not all 1,
``<activation>_x<scale>_<s>`` (``sin_x2_0``). ``info["groups"]`` maps each task to the index of the
(activation, scale) entry it came from: the ground-truth grouping the search should recover.
All of it is generated once from ``seed`` (train and validation inputs from independent streams).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import Dataset

from branchsweep.config import DataConfig
from branchsweep.data.base import DATASETS, MultiTaskData, check_options
from branchsweep.errors import ConfigError
from branchsweep.registry import Registry
from branchsweep.tasks import create_task

ACTIVATIONS: Registry[Callable[[torch.Tensor], torch.Tensor]] = Registry("ltb-synthetic activation")
ACTIVATIONS.register("sin", torch.sin, help="sin(u)")
ACTIVATIONS.register("cos", torch.cos, help="cos(u)")
ACTIVATIONS.register("square", torch.square, help="u²")
ACTIVATIONS.register("bent", lambda u: (torch.sqrt(u * u + 1) - 1) / 2 + u, help="bent identity (√(u²+1)−1)/2 + u")
ACTIVATIONS.register("sinc", lambda u: torch.sinc(u / torch.pi), help="sin(u)/u (1 at u = 0)")

OPTIONS = {"activations", "tasks_per_activation", "scales", "input_dim", "output_dim", "normalize", "input_std"}
INPUT_STD = 1.0
NORMALIZERS = ("input_dim", "activation_std")
B_VARIANCE = 10.0
DELTA_VARIANCE = 2.0


class TensorSplit(Dataset):
    """Items ``{"image": Z[i], <task>: T_task[i], "meta": {}}`` over precomputed tensors."""

    def __init__(self, inputs: torch.Tensor, targets: dict[str, torch.Tensor]) -> None:
        self.inputs, self.targets = inputs, targets

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(index)
        item: dict = {"image": self.inputs[index]}
        for name, t in self.targets.items():
            item[name] = t[index]
        item["meta"] = {}
        return item


def task_names(activations: list[str], scales: list[float], per_activation: int) -> list[str]:
    """Task names in generation order (see the module docstring).

    >>> task_names(["sin", "sin"], [1.0, 2.0], 2)
    ['sin_x1_0', 'sin_x1_1', 'sin_x2_0', 'sin_x2_1']
    """
    plain = all(c == 1 for c in scales)
    return [
        f"{a}_{s}" if plain else f"{a}_x{c:g}_{s}"
        for a, c in zip(activations, scales)
        for s in range(per_activation)
    ]


def generate(
    activations: list[str], scales: list[float], per_activation: int, input_dim: int, output_dim: int,
    samples: dict[str, int], seed: int, normalize: str = "input_dim", input_std: float = INPUT_STD,
) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, torch.Tensor]]]:
    """Inputs and targets per split from Eq. 8 (seeded; identical for identical arguments)."""
    g = torch.Generator().manual_seed(seed)
    B = torch.randn(output_dim, input_dim, generator=g, dtype=torch.float64) * B_VARIANCE**0.5
    names = task_names(activations, scales, per_activation)
    maps = []
    for _ in names:
        maps.append(B + torch.randn(output_dim, input_dim, generator=g, dtype=torch.float64) * DELTA_VARIANCE**0.5)
    phi = [float(input_dim)] * len(activations)
    if normalize == "activation_std":
        # φ_r = std of activation_r over (B + δ) Z on a fixed probe, shared by all tasks of r (and all scales)
        gp = torch.Generator().manual_seed(seed * 1_000_003 + 5)
        probe = torch.randn(4096, input_dim, generator=gp, dtype=torch.float64) * input_std / input_dim**0.5
        u = probe @ B.T * (1 + DELTA_VARIANCE / B_VARIANCE) ** 0.5
        phi = [float(ACTIVATIONS.get(a)(u).std()) for a in activations]
    inputs, targets = {}, {}
    for k, (split, n) in enumerate(samples.items()):
        gz = torch.Generator().manual_seed(seed * 1_000_003 + 17 + k)
        z = torch.randn(n, input_dim, generator=gz, dtype=torch.float64)  # what the network sees
        inputs[split] = z.float()
        z = z * (input_std / input_dim**0.5)  # the Z of Eq. 8
        targets[split] = {}
        i = 0
        for r, (act, scale) in enumerate(zip(activations, scales)):
            fn = ACTIVATIONS.get(act)
            for _ in range(per_activation):
                u = z @ maps[i].T
                targets[split][names[i]] = (scale * fn(u) / phi[r]).float()
                i += 1
    return inputs, targets


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"ltb-synthetic option {name} must be a positive integer, got {value!r}")
    return value


@DATASETS.register("ltb-synthetic")
def ltb_synthetic(cfg: DataConfig) -> MultiTaskData:
    """Learning-to-Branch synthetic regression (Eq. 8; default bent/square/sinc × 5, 2000/500 samples,
    the paper's Figure 3 network ``mlp_select``)."""
    check_options(cfg, OPTIONS)
    if cfg.root is not None:
        raise ConfigError("ltb-synthetic is generated, it reads no --root")
    opts = cfg.options
    activations = [str(a) for a in opts.get("activations", ["bent", "square", "sinc"])]
    if not activations:
        raise ConfigError("ltb-synthetic needs at least one activation (--activations)")
    unknown = [a for a in activations if a not in ACTIVATIONS]
    if unknown:
        raise ConfigError(
            f"ltb-synthetic: unknown activation {unknown[0]!r} in --activations (known: {', '.join(ACTIVATIONS.names())})"
        )
    per_activation = _positive_int("tasks_per_activation", opts.get("tasks_per_activation", 5))
    input_dim = _positive_int("input_dim", opts.get("input_dim", 200))
    output_dim = _positive_int("output_dim", opts.get("output_dim", 100))
    scales = opts.get("scales")
    if scales is None:
        scales = [1.0] * len(activations)
    try:
        scales = [float(c) for c in scales]
    except (TypeError, ValueError):
        raise ConfigError(f"ltb-synthetic --scales must be numbers, got {scales!r}") from None
    if len(scales) != len(activations):
        raise ConfigError(
            f"ltb-synthetic: {len(scales)} scales (--scales) for {len(activations)} activations (--activations)"
        )
    pairs = list(zip(activations, scales))
    if len(set(pairs)) != len(pairs):
        raise ConfigError(f"ltb-synthetic: activation/scale pairs repeat ({pairs}); give repeated activations different --scales")
    try:
        input_std = float(opts.get("input_std", INPUT_STD))
    except (TypeError, ValueError):
        raise ConfigError(f"ltb-synthetic option input_std must be a number, got {opts.get('input_std')!r}") from None
    if input_std <= 0:
        raise ConfigError(f"ltb-synthetic option input_std must be > 0, got {input_std}")
    normalize = opts.get("normalize", "input_dim")
    if normalize not in NORMALIZERS:
        raise ConfigError(f"ltb-synthetic option normalize must be one of {', '.join(NORMALIZERS)}, got {normalize!r}")
    samples = {"train": cfg.train_samples or 2000, "val": cfg.val_samples or 500}
    inputs, targets = generate(activations, scales, per_activation, input_dim, output_dim, samples, cfg.seed,
                               normalize, input_std)
    names = task_names(activations, scales, per_activation)
    tasks = {n: create_task("regression", name=n, out_channels=output_dim) for n in names}
    groups = {n: i // per_activation for i, n in enumerate(names)}

    def make_split(split: str, train: bool) -> Dataset:
        return TensorSplit(inputs[split], targets[split])

    return MultiTaskData(
        name="ltb-synthetic", tasks=tasks, make_split=make_split, input_shape=(input_dim,),
        default_backbone="mlp_select",
        info={"groups": groups, "activations": activations, "scales": scales},
    )
