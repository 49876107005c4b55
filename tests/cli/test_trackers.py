"""`logger=wandb` and `logger=mlflow`: offline runs through the real trackers write the run's
metrics and config locally, next to the CSV log."""

import time

import pytest

from tests.cli.cli_helpers import tiny_args


def _short_run(data, run_dir, *extra):
    from molsym.cli.train import main

    return main(tiny_args(data, run_dir, "data.num_train=8", "data.num_val=4", *extra))


def test_wandb_offline_writes_a_local_run_with_metrics_and_config(emt_xyz, tmp_path,
                                                                  monkeypatch):
    pytest.importorskip("wandb")  # the `wandb` extra (part of `dev`)
    for name in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert _short_run(emt_xyz, tmp_path / "run", "logger=wandb", "logger.wandb.offline=true",
                      "logger.wandb.name=tiny") == 0
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1
    names = (b"train/loss", b"val/forces_mae_meV_per_Angstrom", b"test/forces_mae_meV",
             b"num_channels", b"tiny")
    # wandb's service appends the records after finish() returns: wait for them (<= 60 s)
    deadline = time.monotonic() + 60
    while True:
        record = runs[0].read_bytes()  # protobuf records: names and JSON values stay readable
        missing = [n for n in names if n not in record]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert record.startswith(b":W&B")
    assert not missing, missing
    assert (tmp_path / "run" / "logs" / "metrics.csv").is_file()  # CSV stays on


def test_mlflow_writes_metrics_and_params_to_a_local_file_store(emt_xyz, tmp_path,
                                                                 monkeypatch):
    pytest.importorskip("mlflow")  # the `mlflow` extra (part of `dev`)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    assert _short_run(emt_xyz, tmp_path / "run", "logger=mlflow",
                      "logger.mlflow.experiment_name=tiny", "trainer.max_epochs=2") == 0
    from mlflow.tracking import MlflowClient

    store = tmp_path / "run" / "mlruns"
    client = MlflowClient(tracking_uri=store.resolve().as_uri())
    experiment = client.get_experiment_by_name("tiny")
    (run,) = client.search_runs([experiment.experiment_id])
    history = client.get_metric_history(run.info.run_id, "val/forces_mae_meV_per_Angstrom")
    assert len(history) == 2 and all(m.value > 0 for m in history)
    assert "test/forces_mae_meV_per_Angstrom" in run.data.metrics
    assert run.data.params["model/num_channels"] == "8"
    assert run.data.params["data/num_train"] == "8"


def test_mlflow_without_the_package_says_which_extra(emt_xyz, tmp_path, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "mlflow" else real(name, *a))
    assert _short_run(emt_xyz, tmp_path / "run", "logger=mlflow") == 2
    assert 'pip install "molsym[mlflow]"' in capsys.readouterr().err
