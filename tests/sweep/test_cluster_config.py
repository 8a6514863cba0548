"""``sweeps/cluster.yaml`` against the cluster-config JSON schema shipped inside the installed Ray, plus
what the schema cannot check: a pinned Ray image with Python 3.11 and CUDA, the project installed from a
wheel, the shared file system mounted where the caches go, token auth on every node, and the Train
worker-group start timeout raised above a cold GPU node's boot."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster() -> dict:
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load((ROOT / "sweeps" / "cluster.yaml").read_text())


def test_cluster_yaml_passes_rays_schema(cluster):
    import jsonschema
    import ray

    schema_path = Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"
    schema = json.loads(schema_path.read_text())
    jsonschema.validate(cluster, schema)
    with pytest.raises(jsonschema.ValidationError):  # the schema does reject a broken config
        jsonschema.validate({**cluster, "idle_timeout_minutes": "soon"}, schema)


def test_cluster_yaml_boots_the_project(cluster):
    import ray

    image = cluster["docker"]["image"]
    assert re.fullmatch(rf"rayproject/ray:{re.escape(ray.__version__)}-py311-(gpu|cu\d+)", image), image
    setup = " ".join(cluster["setup_commands"])
    assert "/home/ray/wheels/branchsweep-" in setup and f"=={ray.__version__}" in setup
    assert cluster["file_mounts"]["/home/ray/wheels"] == "./dist"
    assert any("/mnt/shared:/mnt/shared" in o for o in cluster["docker"]["run_options"])
    assert any("mount -t nfs4" in c and "/mnt/shared" in c for c in cluster["initialization_commands"])
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = " ".join(cluster[key])
        assert "RAY_AUTH_MODE=token" in start and "disabled" not in start
        assert int(re.search(r"RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S=(\d+)", start).group(1)) >= 600
    assert "/home/ray/.ray/auth_token" in cluster["file_mounts"]
    assert 0 < cluster["idle_timeout_minutes"] <= 60
    gpu = cluster["available_node_types"]["gpu_worker"]
    assert gpu["resources"]["GPU"] >= 1 and gpu["min_workers"] == 0


def test_workers_get_an_instance_profile_and_the_shared_cache_is_not_world_writable(cluster):
    """GPU workers write to the sweep's S3 prefix: they need an instance profile (the head gets Ray's
    default one). The shared retrain cache is trusted by every trial: no command may make /mnt/shared
    (or anything in it) world-writable."""
    profile = cluster["available_node_types"]["gpu_worker"]["node_config"]["IamInstanceProfile"]
    assert re.fullmatch(r"arn:aws:iam::\d{12}:instance-profile/[\w+=,.@-]+", profile.get("Arn", "")) or \
        profile.get("Name"), profile
    commands = [c for key in ("initialization_commands", "setup_commands", "head_setup_commands",
                              "worker_setup_commands") for c in cluster.get(key) or []]
    for command in commands:
        for mode in re.findall(r"chmod\s+(?:-R\s+)?(\S+)", command):
            if re.fullmatch(r"0?[0-7]{3,4}", mode):
                assert not int(mode, 8) & 0o002, command  # no write bit for others
            else:
                assert not re.search(r"[ao]\w*[+=]\w*w", mode), command
    assert any(re.search(r"chown\s+1000:1000\s+/mnt/shared\b", c) for c in commands)
