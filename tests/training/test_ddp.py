"""Two-process DDP (CPU, gloo) takes the same step as one process on the same global batch."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.cli.cli_helpers import write_emt_frames

HERE = Path(__file__).resolve().parent


@pytest.mark.slow
def test_two_process_ddp_step_equals_single_process(tmp_path):
    data = write_emt_frames(tmp_path / "frames.extxyz", n=8)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    outs = {d: tmp_path / f"state_{d}.pt" for d in (1, 2)}
    proc = subprocess.run(  # Lightning starts the second rank itself
        [sys.executable, str(HERE / "ddp_step.py"), "2", str(data), str(outs[2]), "8"],
        capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    from tests.training.ddp_step import run

    run(1, str(data), str(outs[1]), 8)
    one, two = (torch.load(outs[d], weights_only=True) for d in (1, 2))
    torch.manual_seed(0)  # the initial weights, to check that the step moved them
    from molsym.models import EquivariantModel

    init = EquivariantModel(cutoff=4.0, elements=[1, 6, 8], num_channels=8, num_layers=2,
                            l_max=1, radial_hidden=16, avg_num_neighbors=8.0).double()
    moved = max((one[k] - v).abs().max().item() for k, v in init.state_dict().items())
    assert moved > 1e-4
    for key in one:
        assert torch.allclose(one[key], two[key], atol=1e-10, rtol=1e-8), key


@pytest.mark.slow
def test_ddp_test_metrics_count_every_test_structure_once(tmp_path):
    """7 test structures on 2 ranks: Lightning's sampler would pad them to 8; the metrics of
    the run equal those of the deployed model evaluated on the 7 structures."""
    import json

    from molsym.data.graph import atoms_to_graph
    from molsym.data.readers import read_file
    from molsym.deploy import load_model
    from molsym.training.evaluate import evaluate

    data = write_emt_frames(tmp_path / "frames.extxyz", n=39)  # 24 train, 8 val, 7 test
    run_dir = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore",
           "PYTHONPATH": os.pathsep.join([str(HERE.parents[1]),
                                          os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, str(HERE / "ddp_train.py"), str(data), str(run_dir)],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "exactly once" not in proc.stderr  # Lightning's sampler warning
    test = json.loads((run_dir / "splits.json").read_text())["test"]
    assert len(test) == 7
    model = load_model(run_dir / "model.pt")
    frames = read_file(str(data))
    graphs = [atoms_to_graph(frames[i], model.cutoff) for i in test]
    expected, _ = evaluate(model, graphs)
    got = json.loads((run_dir / "metrics.json").read_text())
    assert set(got) == set(expected)
    for target, m in expected.items():
        for stat in ("mae", "rmse"):
            assert got[target][stat] == pytest.approx(m[stat], rel=1e-5, abs=1e-9), (target, stat)
    from molsym.deploy.model_file import read_model_file

    assert read_model_file(run_dir / "model.pt")["metadata"]["test_metrics"] == got


@pytest.mark.slow
def test_ddp_from_a_store_trains_and_tests_every_structure_once(tmp_path):
    """Two gloo ranks train from a store (`molsym convert`; each rank reads its own shards):
    the run's test metrics equal the deployed model's on the test split read from the store."""
    import json

    from molsym.cli.convert import main as convert_main
    from molsym.data.sharded_dataset import ShardedDataset
    from molsym.deploy import load_model
    from molsym.training.evaluate import evaluate

    data = write_emt_frames(tmp_path / "frames.extxyz", n=39)
    store = tmp_path / "store"
    assert convert_main([str(data), "-o", str(store), "--frames-per-shard", "5",
                         "--workers", "1"]) == 0
    run_dir = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore",
           "PYTHONPATH": os.pathsep.join([str(HERE.parents[1]),
                                          os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, str(HERE / "ddp_train.py"), str(store), str(run_dir)],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    test = json.loads((run_dir / "splits.json").read_text())["test"]
    model = load_model(run_dir / "model.pt")
    expected, _ = evaluate(model, ShardedDataset.open(store).subset(test))
    got = json.loads((run_dir / "metrics.json").read_text())
    for target, m in expected.items():
        assert got[target]["mae"] == pytest.approx(m["mae"], rel=1e-5, abs=1e-9), target
