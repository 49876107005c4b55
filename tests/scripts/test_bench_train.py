"""scripts/benchmarks/bench_train.py: throughput, step shares and the last line from synthetic
timings (no peer venv, no training)."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest

from scripts.benchmarks import bench_train, epoch_clock, mace_peer, train_step_timer
from scripts.benchmarks.train_step_timer import StepTimer, summarize


def test_throughput_skips_the_first_epoch_and_splits_startup():
    # launched at 90; epoch 0 from 100 to 130 (compiling), epochs 1 and 2 take 10 s each;
    # training ends at 150, the process at 90 + 70 = 160 (final test)
    res = bench_train.throughput([100.0, 130.0, 140.0, 150.0], launched=90.0, wall_s=70.0,
                                 n_train=950)
    assert res["timed_epochs"] == 2
    assert res["epoch_s"] == pytest.approx(10.0)
    assert res["conf_per_s"] == pytest.approx(95.0)
    assert res["startup_s"] == pytest.approx(10.0)
    assert res["first_epoch_s"] == pytest.approx(30.0)
    assert res["tail_s"] == pytest.approx(10.0)


@pytest.mark.parametrize("bounds", [[], [100.0, 130.0], [100.0, 130.0, 120.0]])
def test_throughput_is_unknown_without_a_timed_epoch(bounds):
    res = bench_train.throughput(bounds, launched=90.0, wall_s=70.0)
    assert res["conf_per_s"] is None and res["timed_epochs"] == 0


def test_speedups_and_last_line():
    results = {"molsym": {"conf_per_s": 300.0}, "nequip": {"conf_per_s": 100.0},
               "mace": {"conf_per_s": 120.0}, "schnetpack": {"skipped": "not installed"}}
    ratio = bench_train.speedups(results)
    assert ratio == {"nequip": 3.0, "mace": 2.5, "schnetpack": None}
    line = bench_train.last_line(ratio, 0.2345)
    assert line == "e2e_speedup_vs_nequip=3 e2e_speedup_vs_mace=2.5 overhead=0.234"
    unknown = bench_train.last_line(bench_train.speedups({"molsym": {"conf_per_s": None}}), None)
    assert re.fullmatch(r"e2e_speedup_vs_nequip=nan e2e_speedup_vs_mace=nan overhead=nan",
                        unknown)


def test_parse_args_epochs():
    assert bench_train.parse_args(["--quick"]).epochs == 4
    assert bench_train.parse_args([]).epochs == 10
    assert bench_train.parse_args(["--epochs", "3", "--tools", "molsym,mace"]).tools == [
        "molsym", "mace"]
    with pytest.raises(SystemExit):
        bench_train.parse_args(["--epochs", "1"])
    with pytest.raises(SystemExit):
        bench_train.parse_args(["--tools", "molsym,torchani"])


def test_model_size_is_bench_models():
    assert bench_train.model_size() == {"channels": 32, "layers": 2, "l_max": 1}


def _step(epoch: int, **parts: float) -> dict[str, float]:
    return {"epoch": epoch, **{p: parts.get(p, 0.0) for p in train_step_timer.PARTS}}


def test_summarize_shares_and_overhead_after_the_first_epoch():
    compile_step = _step(0, forward=10.0, backward=5.0)  # epoch 0: left out
    step = _step(1, data=0.1, forward=0.3, loss=0.05, logging=0.1, backward=0.3,
                 optimizer=0.05, ema=0.05, hooks=0.05)  # 1.0 s, compute 0.7 s
    epochs = [{"epoch": 0, "wall_s": 100.0, "validation_s": 50.0},
              {"epoch": 1, "wall_s": 4.0, "validation_s": 1.0}]
    out = summarize([compile_step, step, step], epochs)
    assert out["steps"] == 2 and not out["with_first_epoch"]
    assert out["step_ms"] == pytest.approx(1000.0)
    assert out["overhead"] == pytest.approx(0.3)
    assert out["compute_share"] == pytest.approx(0.7)
    assert sum(out["shares"].values()) == pytest.approx(1.0, abs=1e-3)
    assert out["shares"]["logging"] == pytest.approx(0.1)
    assert out["validation_share"] == pytest.approx(0.25)
    only_first = summarize([compile_step], epochs[:1])
    assert only_first["with_first_epoch"] and only_first["overhead"] == pytest.approx(0.0)
    with pytest.raises(ValueError):
        summarize([])


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_step_timer_splits_a_step(monkeypatch, tmp_path):
    """The hooks in Lightning's order, a fake clock: every part lands where it belongs."""
    clock = _Clock()
    monkeypatch.setattr(train_step_timer.time, "perf_counter", clock)
    timer = StepTimer(str(tmp_path / "steps.json"))
    trainer = SimpleNamespace(current_epoch=1, training=True, sanity_checking=False,
                              is_global_zero=True, optimizers=[])

    def work(seconds: float):
        def fn(*_):
            clock.t += seconds
        return fn

    module = SimpleNamespace(forward=work(0.3), loss_fn=SimpleNamespace(forward=work(0.05)),
                             ema=SimpleNamespace(update=work(0.02)))
    timer.on_train_start(trainer, module)
    timer.on_train_epoch_start(trainer, module)
    clock.t += 0.1                                  # loading + collation
    timer.on_train_batch_start(trainer, module, None, 0)
    module.forward()
    module.loss_fn.forward()
    clock.t += 0.04                                 # self.log, zero_grad
    timer.on_before_backward(trainer, module, None)
    clock.t += 0.25
    timer.on_after_backward(trainer, module)
    clock.t += 0.01
    timer.on_before_optimizer_step(trainer, module, None)
    clock.t += 0.06
    timer._after_optimizer()
    module.ema.update()
    clock.t += 0.03                                 # Lightning's bookkeeping
    timer.on_train_batch_end(trainer, module, None, None, 0)
    timer.on_train_epoch_end(trainer, module)
    timer.on_fit_end(trainer, module)
    (step,) = json.loads((tmp_path / "steps.json").read_text())["steps"]
    expected = {"data": 0.1, "forward": 0.3, "loss": 0.05, "logging": 0.04, "backward": 0.25,
                "optimizer": 0.06, "ema": 0.02, "hooks": 0.04}
    assert step == pytest.approx({"epoch": 1, **expected})


def test_epoch_clock_boundaries(tmp_path):
    pytest.importorskip("pytorch_lightning")
    clock = epoch_clock.epoch_clock(str(tmp_path / "epochs.json"))
    for _ in range(3):
        clock.on_train_epoch_start(None, None)
    clock.on_train_end(None, None)
    bounds = epoch_clock.boundaries(json.loads((tmp_path / "epochs.json").read_text()))
    assert len(bounds) == 4 and bounds == sorted(bounds)


def test_mace_epoch_boundaries_from_its_log(tmp_path):
    log = tmp_path / "logs" / "mace_run-0.log"
    log.parent.mkdir()
    log.write_text(
        "2026-12-01 10:00:00.000 INFO: ===========TRAINING===========\n"
        "2026-12-01 10:00:01.500 INFO: Initial: head: Default, loss=1.0\n"
        "2026-12-01 10:00:11.500 INFO: Epoch 0: head: Default, loss=0.5\n"
        "2026-12-01 10:00:11.600 DEBUG: Epoch 0: not an INFO line\n"
        "2026-12-01 10:00:19.500 INFO: Epoch 1: head: Default, loss=0.4\n"
        "2026-12-01 10:00:27.500 INFO: Epoch 2: head: Default, loss=0.3\n")
    bounds = mace_peer.epoch_boundaries(tmp_path)
    assert [b - bounds[0] for b in bounds] == pytest.approx([0.0, 10.0, 18.0, 26.0])
    res = bench_train.throughput(bounds, launched=bounds[0] - 5, wall_s=40.0, n_train=950)
    assert res["epoch_s"] == pytest.approx(8.0) and res["timed_epochs"] == 2
