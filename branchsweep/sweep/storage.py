"""Where a sweep lives: a unique prefix in storage (a folder or a cloud URI), and node-local scratch.

Storage is the source of truth. A sweep writes under ``<storage>/<name>-<run id>/`` (printed at start):

* ``sweep.json`` (its config), ``tune/`` (Tune's experiment state and every trial's Ray checkpoints),
  ``trials/<trial id>/`` (each trial's ``trial.log``, exported architecture and ``result.json``, copied
  there whenever the trial reports), ``results.parquet``, ``metrics.json``, ``sweep.log`` and ``report/``;
* trials keep their working files (search and retrain checkpoints) in node-local scratch
  (:func:`scratch_root`) and persist them through Ray checkpoints, so a retry on any node resumes from
  the last one.

A prefix is a local folder or a URI that ``pyarrow.fs`` understands (``s3://``, ``gs://``, ...; Ray
Tune reads and writes the same URIs). The S3 endpoint and credentials come from the usual
``AWS_*`` variables (``AWS_ENDPOINT_URL`` for an S3-compatible server), on the driver and on every node.

>>> is_uri("s3://bucket/sweeps"), is_uri("/mnt/shared/sweeps"), join("s3://b/x/", "tune", "search")
(True, False, 's3://b/x/tune/search')
"""

from __future__ import annotations

import os
import re
import tempfile
import time
import uuid
from pathlib import Path

from branchsweep.errors import ConfigError

#: Files a trial copies to ``<prefix>/trials/<trial id>/`` whenever it reports (small; what a reader wants).
TRIAL_FILES = ("trial.log", "branch_config.json", "search_info.json", "result.json")
SCRATCH_ENV = "BRANCHSWEEP_SCRATCH"


def is_uri(path: str | os.PathLike) -> bool:
    """True for ``scheme://...`` (cloud storage), False for a local (or mounted) folder."""
    return re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", str(path)) is not None and not str(path).startswith("file://")


def join(base: str | os.PathLike, *parts: str) -> str:
    """``base/part/...`` for a folder or a URI."""
    text = str(base)
    if not is_uri(text):
        return str(Path(text.removeprefix("file://"), *parts))
    return "/".join([text.rstrip("/"), *(p.strip("/") for p in parts)])


def new_run_id() -> str:
    """``YYYYmmdd-HHMMSS-xxxx``: sortable, and unique across drivers started in the same second."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"


def sweep_prefix(storage: str, name: str, run_id: str) -> str:
    """``<storage>/<name>-<run id>``: the folder (or URI) a new sweep writes to."""
    return join(storage, f"{name}-{run_id}")


def _fs(uri: str):
    import pyarrow.fs as pafs

    if not is_uri(uri):
        return pafs.LocalFileSystem(), str(Path(uri.removeprefix("file://")).resolve())
    try:
        return pafs.FileSystem.from_uri(uri)
    except Exception as err:  # unknown scheme, missing credentials, bad bucket name
        raise ConfigError(f"storage {uri}: {str(err).splitlines()[0] if str(err) else type(err).__name__}") from None


def exists(uri: str) -> bool:
    """Whether a file exists at ``uri``."""
    import pyarrow.fs as pafs

    fs, path = _fs(uri)
    return fs.get_file_info(path).type == pafs.FileType.File


def read_bytes(uri: str) -> bytes:
    fs, path = _fs(uri)
    try:
        with fs.open_input_stream(path) as handle:
            return handle.read()
    except FileNotFoundError:
        raise ConfigError(f"not found in storage: {uri}") from None


def write_bytes(uri: str, data: bytes) -> None:
    """Write ``data`` to ``uri``: atomically on a local folder (uuid temp + ``os.replace``); an object
    store's PUT is atomic by itself."""
    if not is_uri(uri):
        from branchsweep.atomic import atomic_write

        atomic_write(uri.removeprefix("file://"), lambda tmp: tmp.write_bytes(data))
        return
    fs, path = _fs(uri)
    with fs.open_output_stream(path) as handle:
        handle.write(data)


def upload(local: str | Path, uri: str) -> None:
    """Copy a local file or folder (recursively) to ``uri``; a no-op when both are the same folder."""
    local = Path(local)
    if not is_uri(uri) and Path(uri).resolve() == local.resolve():
        return
    if local.is_file():
        write_bytes(uri, local.read_bytes())
        return
    for path in sorted(local.rglob("*")):
        if path.is_file():
            write_bytes(join(uri, *path.relative_to(local).parts), path.read_bytes())


def download(uri: str, local: str | Path) -> bool:
    """Copy the folder at ``uri`` into ``local`` (False: nothing there).

    Object keys are untrusted: a key whose part below ``uri`` is absolute, has a ``..`` or ``.`` component
    or would land outside ``local`` is refused (a one-line :class:`ConfigError`) before anything is written.
    """
    import pyarrow.fs as pafs

    fs, path = _fs(uri)
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    files = [i for i in infos if i.type == pafs.FileType.File]
    root = Path(local).resolve()
    targets = []
    for info in files:
        rel = str(Path(info.path).relative_to(path)) if not is_uri(uri) else info.path[len(path.rstrip("/")) + 1:]
        parts = rel.split("/")
        target = Path(root, *parts)
        if rel.startswith("/") or any(p in ("..", ".") for p in parts) or not target.resolve().is_relative_to(root):
            raise ConfigError(f"storage {uri.rstrip('/')}/{rel}: refusing to download a key with an absolute path or a "
                              f"'..' component (it would be written outside {root})")
        targets.append((info, target))
    for info, target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        with fs.open_input_stream(info.path) as handle:
            target.write_bytes(handle.read())
    return bool(files)


def scratch_root() -> Path:
    """Node-local scratch for trial working files: ``$BRANCHSWEEP_SCRATCH``, else the system temp folder
    (``/tmp/branchsweep-scratch``). Never shared between nodes; a retry restores from its Ray checkpoint."""
    value = os.environ.get(SCRATCH_ENV)
    return Path(value) if value else Path(tempfile.gettempdir()) / "branchsweep-scratch"


def resolve_resume(target: str) -> str:
    """The sweep prefix named by ``--resume TARGET`` (a prefix URI or a local run folder holding ``sweep.json``)."""
    target = str(target).rstrip("/") if is_uri(str(target)) else str(Path(target).resolve())
    if not exists(join(target, "sweep.json")):
        raise ConfigError(f"--resume: {target} holds no sweep to resume (no sweep.json)")
    return target


def check_shared(prefix: str) -> None:
    """Fail with one line when a Ray cluster's alive nodes cannot all see the local folder ``prefix``.

    A URI is reachable from every node by construction. A local path is fine on one node, or on many
    when it is a shared mount (NFS/EFS): a marker file written here is looked for by one task per node.
    """
    if is_uri(prefix):
        return
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0]
    here = ray.get_runtime_context().get_node_id()
    others = [n for n in nodes if n["NodeID"] != here]
    if not others:
        return
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    marker = Path(prefix) / f".shared-check-{uuid.uuid4().hex}"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("branchsweep")

    @ray.remote(num_cpus=0)
    def sees(path: str) -> bool:
        return Path(path).is_file()

    try:
        seen = ray.get([sees.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                        .remote(str(marker)) for n in others], timeout=120)
    finally:
        marker.unlink(missing_ok=True)
    blind = [n.get("NodeManagerAddress", n["NodeID"]) for n, ok in zip(others, seen) if not ok]
    if blind:
        raise ConfigError(f"storage {prefix} is a local folder that node(s) {', '.join(blind)} of this "
                          "multi-node Ray cluster cannot see; pass --storage-path s3://... (or a shared mount)")
