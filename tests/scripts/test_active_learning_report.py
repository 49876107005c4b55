"""The active-learning report: rows kept from an earlier run say so, rows without a timing
(a reused run folder) do not break it, and the round totals add up."""

from scripts.benchmarks.active_learning import _same_settings, report


def metrics(forces, spearman=None):
    out = {"forces": {"mae": forces}, "energy_per_atom": {"mae": 1.0}}
    if spearman is not None:
        out["calibration"] = {"forces": {"spearman": spearman}}
    return out


def result():
    env = {"date": "2026-12-03 07:28 UTC", "machine": "x86_64", "cpus": 2,
           "load_avg_1min": 1.0, "python": "3.11", "torch": "2.13.0", "molsym_commit": "abc",
           "threads": 1}
    random = [{"labels": 50, "train_s": None, "oracle_calls": 50, "test_500K": metrics(90.0),
               "test_800K": metrics(130.0)},
              {"labels": 100, "train_s": 361.0, "oracle_calls": 100, "test_500K": metrics(84.0),
               "test_800K": metrics(124.0), "reused_from": "2026-12-02 23:09 UTC (commit x)"}]
    rounds = [{"round": 0, "labels": 20, "oracle_s": 1.2, "train_s": 600.0, "md_s": None,
               "test_500K": metrics(200.0), "test_800K": metrics(280.0, 0.4)},
              {"round": 1, "labels": 70, "oracle_s": 2.5, "train_s": 650.0, "md_s": 150.0,
               "test_500K": metrics(80.0), "test_800K": metrics(120.0, 0.65)}]
    return {"environment": env, "smiles": "CCO", "test_frames": 10, "members": 4,
            "model": "default", "epochs": 10, "max_steps": 1000, "random": random,
            "active": {"rounds": rounds, "labels": 70, "oracle_calls": 70},
            "stability": {"ps": 10.0, "intact": True}, "command": "python -m x"}


def test_report_states_reuse_and_totals():
    text = report(result())
    assert "train (run folder reused)" in text
    assert "rows at 100 labels are kept from the run of 2026-12-02 23:09 UTC" in text
    assert "oracle 4 s, training 1250 s, MD 150 s over its rounds" in text
    assert "last committee): 0.65" in text
    assert "warm-starts each round" in text


def test_commands_differing_only_in_paths_are_the_same_settings():
    a = "molsym train data.path=runs/a/x.extxyz model=default seed=7 hydra.run.dir=runs/a/r"
    b = "molsym train data.path=/abs/runs/a/x.extxyz model=default seed=7 hydra.run.dir=/abs/r"
    assert _same_settings(a, b)
    assert not _same_settings(a, b.replace("seed=7", "seed=8"))
