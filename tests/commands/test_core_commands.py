"""The madds/train/evaluate commands, and that user mistakes end in one clear line (exit 2)."""

import json
import subprocess
import sys

import pytest

from branchsweep.cli import main

TINY = ["--size", "32", "--width", "0.25", "--train-samples", "16", "--val-samples", "8", "--no-progress"]


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_madds_prints_gmadds(capsys):
    """Each line: the GMAdds rounded to two decimals and the exact count, which is the count of the
    built network (FlopCounterMode on a forward pass of the whole BranchedNetwork)."""
    from branchsweep.arch import BranchConfig
    from branchsweep.backbones import create_backbone
    from branchsweep.madds import count_madds
    from branchsweep.network import BranchedNetwork
    from branchsweep.tasks import create_task

    code, out, _ = run_cli(capsys, "madds", "--backbone", "mobilenet_v2", "--tasks", "semseg,sal", "--size", "64",
                           "--width", "0.5")
    assert code == 0
    spec = create_backbone("mobilenet_v2", width=0.5, input_size=64)
    tasks = [create_task("semseg"), create_task("sal")]
    lines = out.strip().splitlines()
    assert len(lines) == 2
    for line, arch in zip(lines, ("single", "shared")):
        config = getattr(BranchConfig, arch)(["semseg", "sal"], spec.num_layers)
        net = BranchedNetwork(spec, tasks, config).eval()
        exact = count_madds(net, spec.example_input(1))
        params = sum(p.numel() for p in net.parameters() if p.requires_grad)
        assert line == (f"mobilenet_v2 64x64 {arch}: {exact / 1e9:.2f} GMAdds ({exact:,} MAdds), "
                        f"{params / 1e6:.2f} M parameters")
    single, shared = (int(line.split("(")[1].split()[0].replace(",", "")) for line in lines)
    assert single > shared > 0


def test_train_then_evaluate(tmp_path, capsys):
    out_dir = tmp_path / "run"
    code, out, _ = run_cli(capsys, "train", "--arch", "shared", "--iterations", "3", "--batch-size", "4",
                           "--tasks", "semseg,depth", "--out", str(out_dir), *TINY)
    assert code == 0, out
    assert "MMAdds" in out and "semseg/mIoU" in out  # a CPU-size net is priced in MMAdds
    summary = json.loads((out_dir / "metrics.json").read_text())
    assert summary["madds"] > 0 and "depth/rmse" in summary["metrics"]
    code, out, _ = run_cli(capsys, "evaluate", str(out_dir))
    assert code == 0
    assert json.loads((out_dir / "metrics_val.json").read_text()) == pytest.approx(summary["metrics"])


def _bad_config(tmp_path, text):
    path = tmp_path / "arch.json"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["madds", "--backbone", "vgg99", "--tasks", "semseg"], "unknown backbone 'vgg99'"),
        (["madds", "--backbone", "mlp", "--tasks", "semseg,sky"], "unknown task 'sky'"),
        (["train", "--tasks", "semseg,sky", *TINY], "unknown task 'sky' for data set 'synthetic-dense'"),
        (["train", "--dataset", "imagenet-mt", *TINY], "unknown data set 'imagenet-mt'"),
        (["train", "--iterations", "0", *TINY], "iterations must be > 0"),
        (["train", "--loss-weight", "semseg", *TINY], "--loss-weight expects TASK=NUMBER"),
        (["train", "--resume", *TINY], "--resume needs --out"),
        (["evaluate", "/nonexistent/run"], "run.json not found"),
        (["madds", "--backbone", "mlp", "--tasks", "semseg", "--bogus"], "unrecognized arguments: --bogus"),
        (["madds", "--backbone", "mlp", "--tasks", "bent_0", "--size", "-5"], "--size must be a positive resolution"),
        (["madds", "--backbone", "mlp", "--tasks", "bent_0", "--size", "0"], "--size must be a positive resolution"),
        (["train", "--lr", "nan", *TINY], "lr must be a finite number, got nan"),
        (["train", "--lr", "-1", *TINY], "lr must be > 0, got -1.0"),
    ],
)
def test_user_errors_are_one_line(capsys, argv, message):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("branchsweep: error:"), err
    assert message in err


def test_bad_branch_configs(tmp_path, capsys):
    merge = {"version": 1, "tasks": ["semseg", "depth"], "layers": [[["semseg"], ["depth"]]] + [[["semseg", "depth"]]] * 17}
    cases = [
        ("{broken", "malformed JSON"),
        (json.dumps(merge), "merges branches"),
        (json.dumps({"version": 1, "tasks": ["semseg", "depth"], "layers": [[["semseg", "depth"]]]}), "1 layers but the backbone has 18"),
    ]
    for text, message in cases:
        code, _, err = run_cli(capsys, "train", "--tasks", "semseg,depth", "--arch", _bad_config(tmp_path, text), *TINY)
        assert code == 2 and message in err, err


def test_no_traceback_in_a_real_process(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "branchsweep", "madds", "--backbone", "nope", "--tasks", "semseg"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "branchsweep: error: unknown backbone 'nope'; known: " + ", ".join(
        __import__("branchsweep.backbones", fromlist=["BACKBONES"]).BACKBONES.names())
