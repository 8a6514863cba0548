"""The sweep's Ray: join a running cluster or start a private instance (:func:`connect_ray`), and say which."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from branchsweep.errors import ConfigError
from branchsweep.sweep.trainable import worker_env

log = logging.getLogger(__name__)


def connect_ray(num_cpus: int | None = None, local: bool = False) -> bool:
    """Join a Ray cluster or start a private one, and print which (address, nodes, resources).

    Default (Ray's convention): join ``RAY_ADDRESS`` when set (``ray job submit`` sets it), else the
    cluster that ``ray start`` runs on this machine (the address file it leaves in Ray's temp folder),
    else start a private instance with ``num_cpus`` CPUs and node address 127.0.0.1 (Ray 2.60 honours
    that only with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` set before ray is imported, as the tests
    do; otherwise it uses the machine's address). A Ray that another program started
    in-process (a notebook, a test session) leaves no address file and is never joined, unlike
    ``ray.init(address="auto")``, which joins any Ray process it finds. ``local=True`` (``--local``)
    always starts a private instance; combined with ``RAY_ADDRESS`` it is a user error.

    Returns True when this call started Ray (the caller then shuts it down).
    """
    import ray

    for key, value in worker_env().items():
        os.environ.setdefault(key, value)
    address = os.environ.get("RAY_ADDRESS", "").strip()
    if local and address not in ("", "local"):
        raise ConfigError(f"--local starts a private Ray instance, but RAY_ADDRESS={address} names a cluster "
                          "to join; unset one of them")
    if ray.is_initialized():
        _print_cluster("using the Ray instance this process already runs")
        return False
    env = {"env_vars": worker_env()}
    if not local and address != "local":
        target = address or _ray_start_address()
        if target:
            try:
                ray.init(address=target, runtime_env=env, log_to_driver=False)
            except ConnectionError as err:
                if address:
                    raise ConfigError(f"cannot join the Ray cluster at RAY_ADDRESS={address}: {err}") from None
                print(f"[sweep] Ray: the cluster recorded by `ray start` ({target}) is gone; starting a private "
                      "instance", flush=True)
            else:
                how = "RAY_ADDRESS" if address else "`ray start`"
                _print_cluster(f"joined the cluster from {how} (--local for a private instance)")
                return False
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, runtime_env=env, log_to_driver=False,
             _node_ip_address="127.0.0.1")
    _print_cluster("started a private instance")
    return True


def _ray_start_address() -> str | None:
    """The address of the cluster ``ray start`` runs on this machine, from the file it writes (None: none).

    Ray's own lookup when available (``ray.init()`` without an address uses it), else the same file:
    ``$RAY_TMPDIR/ray/ray_current_cluster`` (``/tmp/ray/...`` by default).
    """
    try:
        from ray._private.services import find_bootstrap_address

        return find_bootstrap_address(None) or None
    except (ImportError, AttributeError, TypeError):
        root = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp"
        path = Path(root) / "ray" / "ray_current_cluster"
        return (path.read_text().strip() or None) if path.is_file() else None


def _print_cluster(how: str) -> None:
    """One line: how the sweep got its Ray, the cluster's address, live nodes and resources."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    resources = ray.cluster_resources()
    shown = [f"{resources.get(k, 0):g} {k}" for k in ("CPU", "GPU")]
    shown += [f"{v:g} {k}" for k, v in sorted(resources.items())
              if k not in ("CPU", "GPU", "memory", "object_store_memory") and not k.startswith("node:")]
    shown.append(f"{resources.get('memory', 0) / 2**30:.1f} GiB memory")
    line = (f"[sweep] Ray: {how}: {ray.get_runtime_context().gcs_address}, {len(nodes)} node(s), "
            f"{', '.join(shown)}")
    log.info(line)
    print(line, flush=True)

