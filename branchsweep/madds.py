"""MAdds accounting: a per-layer cost look-up table measured with ``torch.utils.flop_counter``.

The cost of a branched network depends only on how many copies of each layer it runs, so

    MAdds(config) = c_stem + Σ_l c_l · |κ_l| + Σ_t c_head(t)

where ``c_l`` is the MAdds of one copy of layer ``l``, ``|κ_l|`` the number of task groups at layer ``l``
and ``c_head(t)`` the cost of task ``t``'s head. The table is measured once per backbone, width,
input size and task head sizes, with ``FlopCounterMode`` (which counts convolutions and matrix
multiplications; MAdds = FLOPs / 2), and cached on disk. The same numbers price the BMTAS resource
loss, so the search optimises exactly what the report plots.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from branchsweep.arch import BranchConfig
from branchsweep.atomic import write_text
from branchsweep.backbones import BackboneSpec
from branchsweep.tasks import Task

TABLE_VERSION = 1


def format_madds(madds: float) -> str:
    """MAdds in the unit that gives a digit before the point: G from 0.1 G, M from 0.1 M, else K.

    Paper-size networks read naturally in GMAdds; the embedded CPU-size ones (~0.5 MMAdds) would
    print as 0.000 GMAdds.

    >>> format_madds(15.63e9), format_madds(4.67e5), format_madds(3e3)
    ('15.630 GMAdds', '0.467 MMAdds', '3.000 KMAdds')
    """
    for scale, unit in ((1e9, "GMAdds"), (1e6, "MMAdds")):
        if abs(madds) >= 0.1 * scale:
            return f"{madds / scale:.3f} {unit}"
    return f"{madds / 1e3:.3f} KMAdds"


def default_cache_dir() -> Path:
    """``$BRANCHSWEEP_CACHE`` or ``$XDG_CACHE_HOME/branchsweep`` (``~/.cache/branchsweep``)."""
    if os.environ.get("BRANCHSWEEP_CACHE"):
        return Path(os.environ["BRANCHSWEEP_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "branchsweep"


@dataclass(frozen=True)
class MaddsTable:
    """Per-layer and per-head MAdds of one backbone at one input size (batch 1)."""

    stem: int
    layers: tuple[int, ...]
    heads: dict[str, int]
    layer_names: tuple[str, ...]

    def madds(self, config: BranchConfig) -> int:
        """MAdds of the branched network described by ``config`` (sum over its blocks and heads)."""
        if config.num_layers != len(self.layers):
            raise ValueError(f"config has {config.num_layers} layers, table {len(self.layers)}")
        missing = [t for t in config.tasks if t not in self.heads]
        if missing:
            raise ValueError(f"no head cost for tasks {missing}")
        total = self.stem + sum(c * config.num_groups(layer) for layer, c in enumerate(self.layers))
        return total + sum(self.heads[t] for t in config.tasks)

    def layer_tensor(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """The per-layer costs as a tensor (the ``layer_madds`` argument of the resource loss)."""
        return torch.tensor(self.layers, dtype=dtype)

    def to_json(self) -> str:
        return json.dumps({"version": TABLE_VERSION, **asdict(self)})

    @classmethod
    def from_json(cls, text: str) -> MaddsTable:
        data = json.loads(text)
        if data.pop("version", None) != TABLE_VERSION:
            raise ValueError("stale MAdds table")
        return cls(
            stem=int(data["stem"]), layers=tuple(int(v) for v in data["layers"]),
            heads={k: int(v) for k, v in data["heads"].items()}, layer_names=tuple(data["layer_names"]),
        )


def count_madds(module: torch.nn.Module, *args, **kwargs) -> int:
    """MAdds of one call ``module(*args, **kwargs)`` (FLOPs counted by ``FlopCounterMode``, halved)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(*args, **kwargs)
    return counter.get_total_flops() // 2


def measure_table(spec: BackboneSpec, tasks: Sequence[Task]) -> MaddsTable:
    """Measure one copy of every layer and every head at batch size 1, in eval mode."""
    x = spec.example_input(1)
    out_size = tuple(x.shape[2:]) if x.dim() == 4 else None
    stem = spec.stem().eval()
    with torch.no_grad():
        c_stem = count_madds(stem, x)
        feat = stem(x)
        costs, skips = [], []
        for layer, factory in enumerate(spec.layers):
            block = factory().eval()
            costs.append(count_madds(block, feat))
            feat = block(feat)
            if layer in spec.skip_layers:
                skips.append(feat)
        heads = {}
        for task in tasks:
            heads[task.name] = count_madds(spec.make_head(task).eval(), feat, skips, out_size)
    return MaddsTable(c_stem, tuple(costs), heads, tuple(spec.layer_names))


def _cache_key(spec: BackboneSpec, tasks: Sequence[Task]) -> str:
    key = {
        "spec": spec.cache_key(),
        "heads": sorted((t.name, t.kind, t.out_channels) for t in tasks),
        "torch": torch.__version__.split("+")[0],
        "version": TABLE_VERSION,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


def madds_table(spec: BackboneSpec, tasks: Sequence[Task], cache_dir: str | Path | None = None,
                use_cache: bool = True) -> MaddsTable:
    """The MAdds table of ``spec`` with ``tasks``' heads, from the disk cache when present."""
    path = Path(cache_dir or default_cache_dir()) / "madds" / f"{spec.name}-{_cache_key(spec, tasks)}.json"
    if use_cache and path.is_file():
        try:
            return MaddsTable.from_json(path.read_text())
        except (ValueError, KeyError, json.JSONDecodeError):
            pass  # a stale or broken cache entry is simply measured again
    table = measure_table(spec, tasks)
    if use_cache:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text(path, table.to_json())
        except OSError:
            pass  # the cache is an optimisation; a read-only home must not break pricing
    return table
