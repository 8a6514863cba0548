"""A branched network as one deployable graph: ONNX or TorchScript, checked against PyTorch.

The graph has one input (``input``: the image batch, or the feature vectors of a vector backbone) and
one named output per task, in task order (``BranchedNetwork`` computes every shared block once, so
the branches are parallel subgraphs of the one graph). The batch axis is dynamic; the image size is
fixed unless ``dynamic_size`` is asked for and the backbone allows it (no layer whose shape depends on
the input size, such as a flatten before a linear layer).

ONNX goes through ``torch.onnx.export``'s ``torch.export``-based exporter (PyTorch's default), with the
TorchScript-based one as a fallback for a model the first cannot capture; the file must pass
``onnx.checker.check_model(full_check=True)``. TorchScript is ``torch.jit.trace`` of the same module.

:func:`check_outputs` runs the exported file (onnxruntime on the CPU, or ``torch.jit.load``) and the
PyTorch network in eval mode on the same batch and passes when every output element satisfies
``|exported − pytorch| ≤ ATOL + RTOL · |pytorch|`` (``numpy.allclose``) in float32. It reports the
largest absolute error, the largest relative error over the elements with ``|pytorch| ≥ ATOL`` (below
that the relative error measures noise around zero), and the share of the tolerance used by the worst
element (``worst_ratio``, at most 1 when the check passes).
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from branchsweep.errors import ConfigError
from branchsweep.runs import LoadedRun, load_run

FORMATS = ("onnx", "torchscript")
#: Tolerance of the equality check (float32): an element passes when |exported − pytorch| ≤ ATOL + RTOL·|pytorch|.
ATOL = 1e-4
RTOL = 1e-3
INPUT_NAME = "input"
#: Upper bound of the dynamic axes (the exporter needs one); far above any deployable batch or size.
_MAX_DIM = 1 << 16

__all__ = ["ATOL", "FORMATS", "RTOL", "CheckResult", "GraphOutputs", "LoadedRun", "check_outputs", "export",
           "export_onnx", "export_torchscript", "load_run", "output_names"]


class GraphOutputs(nn.Module):
    """A network returning ``{task: tensor}`` as a tuple in task order (graph formats have positional outputs)."""

    def __init__(self, model: nn.Module, names: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.names = list(names)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(x)
        return tuple(out[n] for n in self.names)


def output_names(model: nn.Module, example: torch.Tensor) -> list[str]:
    """The task names, in the order the network returns them (``task_names``, else one forward pass)."""
    names = getattr(model, "task_names", None)
    if names is None:
        with torch.no_grad():
            out = model(example)
        if not isinstance(out, Mapping):
            raise ConfigError("the network must return a dict of task outputs")
        names = list(out)
    return list(names)


def _as_graph(model: nn.Module, example: torch.Tensor) -> GraphOutputs:
    return GraphOutputs(model, output_names(model, example)).eval()


def check_dynamic_size(model: nn.Module, example: torch.Tensor) -> tuple[int, int]:
    """A second image size the network runs at (an error naming why when it cannot)."""
    if example.dim() != 4:
        raise ConfigError(f"--dynamic-size: the input is a {example.dim() - 1}-D vector, not an image; it has no size")
    h, w = example.shape[-2:]
    other = (h + 16, w + 32)
    try:
        with torch.no_grad():
            model(torch.zeros(1, example.shape[1], *other))
    except RuntimeError as err:
        raise ConfigError(f"--dynamic-size: this backbone only runs at {h}x{w} (a layer depends on the image size: "
                          f"{str(err).strip().splitlines()[0]}); export without --dynamic-size") from None
    return other


def _first_line(err: BaseException) -> str:
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def export_onnx(model: nn.Module, example: torch.Tensor, path: str | Path, dynamic_size: bool = False) -> dict[str, Any]:
    """Write ``model`` (eval mode) as one ONNX graph to ``path`` and check it with ``onnx.checker``.

    Returns ``{"input", "outputs", "dynamic_axes", "exporter", "opset"}``.
    """
    import onnx

    path = Path(path)
    model = model.eval()
    graph = _as_graph(model, example)
    if dynamic_size:
        check_dynamic_size(model, example)
    axes = {0: "batch"}
    if dynamic_size:
        axes.update({2: "height", 3: "width"})
    names = graph.names
    exporter, errors = "dynamo", []
    for exporter in ("dynamo", "torchscript"):
        try:
            _onnx_export(graph, example, path, names, axes, exporter)
            break
        except Exception as err:  # the exporters raise many kinds; try the other, then report both
            errors.append(f"{exporter} exporter: {_first_line(err)}")
    else:
        raise ConfigError(f"ONNX cannot express this network ({'; '.join(errors)})")
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as err:
        raise ConfigError(f"{path}: the exported ONNX model fails onnx.checker ({_first_line(err)})") from None
    opset = next((o.version for o in onnx.load(str(path), load_external_data=False).opset_import
                  if o.domain in ("", "ai.onnx")), None)
    return {"input": INPUT_NAME, "outputs": names, "dynamic_axes": {str(k): v for k, v in axes.items()},
            "exporter": exporter, "opset": opset}


def _onnx_export(graph: GraphOutputs, example: torch.Tensor, path: Path, names: list[str], axes: dict[int, str],
                 exporter: str) -> None:
    quiet = io.StringIO()  # the exporter prints its progress to stdout
    with contextlib.redirect_stdout(quiet), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            dims = {i: torch.export.Dim(name, min=1, max=_MAX_DIM) for i, name in axes.items()}
            program = torch.onnx.export(graph, (example,), input_names=[INPUT_NAME], output_names=names,
                                        dynamic_shapes=(dims,), dynamo=True, verbose=False)
            program.save(str(path), external_data=False)
        else:
            dynamic = {INPUT_NAME: dict(axes), **{n: {0: "batch"} for n in names}}
            torch.onnx.export(graph, (example,), str(path), input_names=[INPUT_NAME], output_names=names,
                              dynamic_axes=dynamic, dynamo=False, opset_version=17)


def export_torchscript(model: nn.Module, example: torch.Tensor, path: str | Path, dynamic_size: bool = False
                       ) -> dict[str, Any]:
    """Write ``model`` (eval mode) as a traced TorchScript module (tuple output in task order) to ``path``."""
    model = model.eval()
    graph = _as_graph(model, example)
    if dynamic_size:
        check_dynamic_size(model, example)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(graph, (example,), check_trace=False)
    except Exception as err:  # tracing errors come in many types
        raise ConfigError(f"TorchScript cannot express this network ({_first_line(err)})") from None
    traced.save(str(path))
    axes = {0: "batch", **({2: "height", 3: "width"} if dynamic_size else {})}
    return {"input": INPUT_NAME, "outputs": graph.names, "dynamic_axes": {str(k): v for k, v in axes.items()},
            "exporter": "torch.jit.trace", "opset": None}


@dataclass
class CheckResult:
    """The exported graph against PyTorch on one batch: largest absolute and relative errors per output."""

    passed: bool
    max_abs: float
    max_rel: float
    batch: int
    input_shape: list[int]
    atol: float = ATOL
    rtol: float = RTOL
    #: Largest ``|exported − pytorch| / (atol + rtol·|pytorch|)``: the share of the tolerance used (≤ 1 passes).
    worst_ratio: float = 0.0
    per_output: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        return (f"max abs error {self.max_abs:.3g}, max rel error {self.max_rel:.3g} on a batch of {self.batch}; "
                f"{self.worst_ratio:.3g} of the tolerance |Δ| ≤ {self.atol:g} + {self.rtol:g}·|pytorch| used: "
                f"{'ok' if self.passed else 'FAILED'}")


def run_exported(path: str | Path, fmt: str, x: torch.Tensor) -> list[torch.Tensor]:
    """The outputs of the exported file on ``x`` (onnxruntime on the CPU, or ``torch.jit.load``)."""
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return [torch.from_numpy(o) for o in session.run(None, {INPUT_NAME: x.numpy()})]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated upstream, still supported
        loaded = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        return list(loaded(x))


def check_outputs(model: nn.Module, example: torch.Tensor, path: str | Path, fmt: str = "onnx",
                  atol: float = ATOL, rtol: float = RTOL) -> CheckResult:
    """Compare the exported file with ``model`` (eval mode) on ``example``; see the module docstring."""
    names = output_names(model, example)
    with torch.no_grad():
        reference = model.eval()(example)
    exported = run_exported(path, fmt, example.float())
    if len(exported) != len(names):
        raise ConfigError(f"{path}: {len(exported)} outputs, the network has {len(names)} tasks")
    per_output: dict[str, dict[str, float]] = {}
    passed = True
    for name, got in zip(names, exported):
        want = reference[name].float()
        if tuple(got.shape) != tuple(want.shape):
            raise ConfigError(f"{path}: output {name!r} has shape {tuple(got.shape)}, PyTorch's is {tuple(want.shape)}")
        got = got.float()
        diff = (got - want).abs().masked_fill(torch.isnan(got) & torch.isnan(want), 0.0)
        big = want.abs() >= atol  # relative error where it is meaningful
        rel = float((diff[big] / want.abs()[big]).max()) if big.any() else 0.0
        ratio = float((diff / (atol + rtol * want.abs().nan_to_num(0.0))).nan_to_num(math.inf).max()) if diff.numel() else 0.0
        per_output[name] = {"max_abs": float(diff.max()) if diff.numel() else 0.0, "max_rel": rel, "worst_ratio": ratio}
        passed = passed and bool(torch.allclose(got, want, atol=atol, rtol=rtol, equal_nan=True))
    max_abs = max((v["max_abs"] for v in per_output.values()), default=0.0)
    max_rel = max((v["max_rel"] for v in per_output.values()), default=0.0)
    worst = max((v["worst_ratio"] for v in per_output.values()), default=0.0)
    return CheckResult(passed, max_abs, max_rel, int(example.shape[0]), list(example.shape), atol, rtol, worst,
                       per_output)


def export(model: nn.Module, example: torch.Tensor, path: str | Path, fmt: str = "onnx",
           dynamic_size: bool = False) -> dict[str, Any]:
    """Export in ``fmt`` (:data:`FORMATS`) and check the outputs; ``{"graph": ..., "check": CheckResult}``.

    With ``dynamic_size`` the check also runs at a second image size.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r} (formats: {', '.join(FORMATS)})")
    writer = export_onnx if fmt == "onnx" else export_torchscript
    graph = writer(model, example, path, dynamic_size=dynamic_size)
    check = check_outputs(model, example, path, fmt)
    checks = [check]
    if dynamic_size:
        h, w = check_dynamic_size(model, example)
        other = torch.nn.functional.interpolate(example, size=(h, w), mode="bilinear", align_corners=False)
        checks.append(check_outputs(model, other, path, fmt))
    return {"graph": graph, "check": check, "checks": checks}
