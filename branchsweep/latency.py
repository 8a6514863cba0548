"""Measured inference latency and memory of a network: :func:`measure` under :class:`LatencySettings`.

One call runs ``warmup`` untimed forward passes, then ``repeats`` timed ones, each on the same batch of
``batch`` inputs (``example``'s first sample repeated), with ``threads`` intra-op threads, and reports
the median and the 90th percentile of the wall-clock times (``time.perf_counter``; on CUDA the device
is synchronised before the clock is read). Runtimes:

* ``torch``: the module itself, eval mode, ``torch.inference_mode``;
* ``onnxruntime``: the module exported to a temporary ONNX file (:func:`branchsweep.export.export_onnx`),
  run by an ``InferenceSession`` (``CPUExecutionProvider``, or ``CUDAExecutionProvider`` on ``cuda``)
  with ``intra_op_num_threads=threads`` and sequential execution.

``peak_mem_mb`` is the *working* memory of inference, not the weights (loaded before measuring) and
not PyTorch's one-time initialisation (with ``torch`` one untimed pass runs before the memory window
opens; an onnxruntime session initialises when it is created, and the growth of its memory arena during
the first passes is counted):

* CUDA with ``torch``: ``torch.cuda.max_memory_allocated()`` during the runs minus the memory allocated
  before them (the caching allocator's tensors; not its reserve, not cuDNN workspaces held by the driver);
* CPU (and onnxruntime on CUDA): the process's peak resident set size during the runs minus its resident
  size just before them (Linux: the high-water mark ``VmHWM`` of ``/proc/self/status``, reset through
  ``/proc/self/clear_refs``, after glibc's ``malloc_trim`` returned freed heap to the OS; elsewhere the
  growth of ``ru_maxrss``, which only sees new peaks of the process). It counts every page the process
  touches during the runs — activations, onnxruntime's arena growth, thread stacks — and can read low
  when the allocator reuses memory it kept from before the runs. ``memory`` in the result names which
  measure was used.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import re
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from branchsweep.errors import ConfigError

RUNTIMES = ("torch", "onnxruntime")


@dataclass
class LatencySettings:
    """How to measure: device (``cpu``, ``cuda``, ``cuda:N``), batch size, intra-op threads, untimed
    warm-up passes, timed repeats, runtime (:data:`RUNTIMES`)."""

    device: str = "cpu"
    batch: int = 1
    threads: int = 1
    warmup: int = 5
    repeats: int = 30
    runtime: str = "torch"

    def __post_init__(self) -> None:
        if not re.fullmatch(r"cpu|cuda(:\d+)?", str(self.device)):
            raise ConfigError(f"latency device must be cpu, cuda or cuda:N, got {self.device!r}")
        for name, low in (("batch", 1), ("threads", 1), ("warmup", 0), ("repeats", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"latency {name} must be an integer >= {low}, got {value!r}")
        if self.runtime not in RUNTIMES:
            raise ConfigError(f"latency runtime must be one of {', '.join(RUNTIMES)}, got {self.runtime!r}")

    def check_available(self) -> None:
        """A one-line ConfigError when this machine cannot run these settings."""
        if self.device.startswith("cuda"):
            if not torch.cuda.is_available():
                raise ConfigError(f"--device {self.device}: CUDA is not available on this machine")
            index = int(self.device.partition(":")[2] or 0)
            if index >= torch.cuda.device_count():
                raise ConfigError(f"--device {self.device}: this machine has {torch.cuda.device_count()} GPU(s)")
            if self.runtime == "onnxruntime":
                import onnxruntime as ort

                if "CUDAExecutionProvider" not in ort.get_available_providers():
                    raise ConfigError("onnxruntime on cuda needs the onnxruntime-gpu package (this onnxruntime has "
                                      f"{', '.join(ort.get_available_providers())})")


@dataclass
class LatencyResult:
    """Median and 90th-percentile latency (milliseconds per batch) and working memory (MiB)."""

    median_ms: float
    p90_ms: float
    peak_mem_mb: float
    repeats: int
    settings: LatencySettings
    #: What ``peak_mem_mb`` measures (see the module docstring).
    memory: str = ""
    times_ms: list[float] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"median_ms": self.median_ms, "p90_ms": self.p90_ms, "peak_mem_mb": self.peak_mem_mb,
                "repeats": self.repeats, "memory": self.memory, **asdict(self.settings)}


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0..100), linear between order statistics (numpy's default).

    >>> percentile([1.0, 2.0, 3.0, 4.0], 90)
    3.7
    """
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low, high = math.floor(pos), math.ceil(pos)
    return round(ordered[low] + (ordered[high] - ordered[low]) * (pos - low), 12)


# ------------------------------------------------------------------------------------------- memory
_STATUS = Path("/proc/self/status")


def _status_kb(field_name: str) -> int | None:
    try:
        match = re.search(rf"^{field_name}:\s+(\d+)\s+kB", _STATUS.read_text(), re.M)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def _release_free_heap() -> None:
    """Hand memory freed earlier back to the OS (glibc ``malloc_trim``), so that what the runs allocate
    shows as RSS growth instead of reusing heap an earlier measurement left behind."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


@contextlib.contextmanager
def _peak_rss() -> Iterator[Callable[[], tuple[float, str]]]:
    """Yields a function returning ``(peak RSS growth in MiB since entry, what was measured)``."""
    _release_free_heap()
    reset = False
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark to the current RSS
        reset = _status_kb("VmHWM") is not None
    except OSError:
        pass
    if reset:
        before = _status_kb("VmRSS") or 0

        def read() -> tuple[float, str]:
            return max(0, (_status_kb("VmHWM") or 0) - before) / 1024, "peak RSS growth (VmHWM)"
    else:
        scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
        start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

        def read() -> tuple[float, str]:
            grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start
            return max(0, grown) * scale / 2**20, "peak RSS growth (ru_maxrss, new peaks only)"
    yield read


@contextlib.contextmanager
def _cuda_peak(device: torch.device) -> Iterator[Callable[[], tuple[float, str]]]:
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)

    def read() -> tuple[float, str]:
        return max(0, torch.cuda.max_memory_allocated(device) - before) / 2**20, "torch.cuda.max_memory_allocated growth"
    yield read


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


# ------------------------------------------------------------------------------------------- runners
def batch_of(example: torch.Tensor, batch: int) -> torch.Tensor:
    """``batch`` copies of ``example``'s first sample."""
    first = example[:1]
    return first.expand(batch, *first.shape[1:]).contiguous()


def _torch_runner(model: nn.Module, x: torch.Tensor, device: torch.device) -> Callable[[], None]:
    model = model.to(device).eval()
    x = x.to(device)
    cuda = device.type == "cuda"

    def run() -> None:
        with torch.inference_mode():
            model(x)
        if cuda:
            torch.cuda.synchronize(device)
    return run


def _ort_session(path: Path, settings: LatencySettings):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = settings.threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if settings.device.startswith("cuda"):
        index = int(settings.device.partition(":")[2] or 0)
        providers: list = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    else:
        providers = ["CPUExecutionProvider"]
    return ort.InferenceSession(str(path), sess_options=opts, providers=providers)


def measure(model: nn.Module, example: torch.Tensor, settings: LatencySettings,
            onnx_path: str | Path | None = None) -> LatencyResult:
    """Latency and working memory of ``model`` on ``example``'s first sample repeated ``settings.batch``
    times (see the module docstring). ``onnx_path``: an ONNX file of ``model`` to run with
    onnxruntime instead of exporting one (dynamic batch axis required). With ``torch`` the model is
    moved to ``settings.device`` and set to eval mode."""
    settings.check_available()
    device = torch.device(settings.device)
    x = batch_of(example.detach().float().cpu(), settings.batch)
    with contextlib.ExitStack() as stack:
        if settings.runtime == "onnxruntime":
            if onnx_path is None:
                from branchsweep.export import export_onnx

                tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="branchsweep-latency-")))
                onnx_path = tmp / "model.onnx"
                export_onnx(model.cpu().eval(), x, onnx_path)
            session = _ort_session(Path(onnx_path), settings)
            feed = {session.get_inputs()[0].name: x.numpy()}

            def run() -> None:
                session.run(None, feed)
        else:
            run = _torch_runner(model, x, device)
        cuda_torch = device.type == "cuda" and settings.runtime == "torch"
        with _threads(settings.threads):
            if settings.runtime == "torch":  # PyTorch's one-time initialisation (kernels, thread pools) is not
                run()  # working memory; onnxruntime did its own when the session was created
            with (_cuda_peak(device) if cuda_torch else _peak_rss()) as peak:
                for _ in range(settings.warmup):
                    run()
                times = []
                for _ in range(settings.repeats):
                    t0 = time.perf_counter()
                    run()
                    times.append((time.perf_counter() - t0) * 1e3)
                mem, what = peak()
    return LatencyResult(statistics.median(times), percentile(times, 90), mem, settings.repeats, settings, what, times)
