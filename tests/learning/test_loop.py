"""``molsym learn`` end to end on EMT (ethanol, a tiny committee, a few epochs): the folder,
the report, resume without repeating a label, and the bad-input refusals."""

import json

import numpy as np
import pytest

from molsym.cli.learn import main
from molsym.deploy import load_model
from molsym.models import EnsembleModel


def tiny(run_dir, *extra):
    """A 2-round loop in seconds: 2 members, tiny model, 3 epochs, short MD; the default
    relative threshold (the committee of a few epochs disagrees little but errs a lot, so an
    absolute 0.1 eV/Angstrom would pick nothing)."""
    return ["smiles=CCO", "oracle=emt", "model=small", "model.num_channels=8",
            "model.radial_hidden=16", "ensemble.size=2", "trainer.max_epochs=3",
            "learn.num_conformers=2", "learn.rattled_copies=3", "learn.num_trajectories=2",
            "learn.md_steps=30", "learn.sample_every=5", "learn.labels_per_round=4",
            "learn.min_frame_distance=0.01", "learn.max_rounds=2",
            "learn.max_labels=40", f"hydra.run.dir={run_dir}", *extra]


def probe(counter):
    """EMT that appends a line per call to ``counter`` (tests/oracles/helpers.py)."""
    return ["oracle._target_=tests.oracles.helpers.ProbeOracle", f"+oracle.counter={counter}"]


def label_keys(run_dir):
    return [line.split("label_key=")[1].split()[0]
            for line in (run_dir / "labels.extxyz").read_text().splitlines()
            if "label_key=" in line]


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("molsym learn: error: ")
    return lines[0]


def test_two_rounds_give_labels_rounds_committee_and_report(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(tiny(run)) == 0
    out = capsys.readouterr().out
    assert "round 1 |" in out and "oracle emt: labelling" in out and "MD with the committee" in out
    keys = label_keys(run)
    assert len(keys) == len(set(keys))  # no structure labelled twice
    records = [json.loads((run / "rounds" / str(k) / "round.json").read_text())
               for k in range(3)]
    assert records[1]["labelled"] > 0 and records[2]["labelled"] > 0
    assert sum(r["labelled"] for r in records) == len(keys)
    assert records[2]["labels_total"] == len(keys) <= 40
    # round k trained on every label up to it
    assert len(label_keys(run / "rounds" / "2" / "train")) == len(keys)
    from omegaconf import OmegaConf
    member = OmegaConf.load(run / "rounds" / "2" / "train" / "members" / "1" / "config.yaml")
    assert member.init_from == str(run / "rounds" / "1" / "train" / "model.pt")  # warm start
    assert member.finetune.member == 1
    assert OmegaConf.load(run / "rounds" / "0" / "train" / "members" / "0" / "config.yaml"
                          ).init_from is None
    committee = load_model(run / "model.pt")
    assert isinstance(committee, EnsembleModel) and len(committee) == 2
    trained = (run / "rounds" / "2" / "train" / "model.pt").read_bytes()
    assert (run / "model.pt").read_bytes() == trained
    report = (run / "report.md").read_text()
    assert "2 rounds done" in report and "| 2 |" in report
    for png in ("labels_per_round.png", "disagreement_per_round.png", "validation_error.png"):
        assert (run / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({png})" in report
    fresh = records[1]["fresh_errors"]  # the round-0 committee on round 1's new labels
    assert fresh["count"] == records[1]["labelled"] and np.isfinite(fresh["forces_mae"])
    explore = json.loads((run / "rounds" / "1" / "explore.json").read_text())
    assert len(explore["spreads"]) == 2  # two trajectories
    assert all(len(s) == 30 // 5 for s in explore["spreads"])


@pytest.mark.slow  # three runs: about 45 s on a loaded 2-core machine
def test_resume_repeats_no_label(tmp_path, capsys):
    run, counter = tmp_path / "run", tmp_path / "calls.txt"
    assert main(tiny(run, "learn.max_rounds=1", *probe(counter))) == 0
    first_labels = (run / "labels.extxyz").read_bytes()
    first_model = (run / "rounds" / "0" / "train" / "model.pt").stat().st_mtime_ns
    assert len(counter.read_text().splitlines()) == len(label_keys(run))
    # as if killed after labelling round 1, before its committee was trained
    import shutil
    shutil.rmtree(run / "rounds" / "1" / "train")
    (run / "rounds" / "1" / "round.json").unlink()
    calls = len(counter.read_text().splitlines())
    assert main(tiny(run, "learn.max_rounds=1", *probe(counter))) == 0
    assert len(counter.read_text().splitlines()) == calls  # nothing labelled again
    assert (run / "rounds" / "1" / "train" / "model.pt").is_file()  # retrained
    # the same run, one round further
    assert main(tiny(run, *probe(counter))) == 0
    keys = label_keys(run)
    assert len(keys) == len(set(keys))
    assert len(counter.read_text().splitlines()) == len(keys)  # one oracle call per label
    assert (run / "labels.extxyz").read_bytes().startswith(first_labels)
    assert (run / "rounds" / "0" / "train" / "model.pt").stat().st_mtime_ns == first_model
    assert (run / "rounds" / "2" / "round.json").is_file()
    # rerun with the budget already spent: the finished rounds are replayed, so the final
    # committee is still round 2's, not round 0's, and nothing is labelled or trained
    calls = len(counter.read_text().splitlines())
    assert main(tiny(run, f"learn.max_labels={len(keys)}", "learn.max_rounds=5",
                     *probe(counter))) == 0
    assert len(counter.read_text().splitlines()) == calls
    assert (run / "model.pt").read_bytes() == (
        run / "rounds" / "2" / "train" / "model.pt").read_bytes()
    assert "label budget spent" in (run / "report.md").read_text()


@pytest.mark.parametrize("override, status, message", [
    ("smiles=C1CC", 1, "invalid SMILES 'C1CC'"),
    ("smiles=CS", 2, "oracle emt does not support S (Z=16)"),
    ("learn.max_labels=0", 2, "learn.max_labels=0: the label budget must be at least 3"),
])
def test_bad_input_is_one_line(tmp_path, capsys, override, status, message):
    run = tmp_path / "run"
    assert main(tiny(run, override)) == status
    assert message in one_error_line(capsys.readouterr().err)
    assert not (run / "labels.extxyz").is_file() or not label_keys(run)


FAILING = ["oracle._target_=tests.oracles.helpers.ProbeOracle", "+oracle.fail_all=true"]


def test_an_oracle_failing_everywhere_is_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(tiny(run, *FAILING)) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "oracle probe failed on" in line and "nothing labelled" in line
    assert (run / "failures.jsonl").read_text().count("SCF not converged") >= 1
    assert not (run / "rounds" / "0" / "train").exists()


@pytest.mark.slow  # two runs with a start set each: over 20 s on a loaded machine
def test_a_spent_time_budget_then_a_failing_oracle_lose_no_label(tmp_path, capsys):
    failing = FAILING
    # a time budget spent after the start set (nothing recorded, so a rerun goes on) ...
    good = tmp_path / "good"
    assert main(tiny(good, "learn.max_rounds=1", "learn.md_steps=5", "learn.max_hours=1e-6")) == 0
    assert "time budget spent" in capsys.readouterr().out
    assert not (good / "rounds" / "1").exists()
    before = (good / "labels.extxyz").read_bytes()
    # ... then the failing oracle in the same folder: refused, nothing lost
    assert main(tiny(good, "learn.max_rounds=1", "learn.md_steps=5", *failing)) != 0
    one_error_line(capsys.readouterr().err)
    assert (good / "labels.extxyz").read_bytes() == before


@pytest.mark.slow  # a real kill: about a minute on a loaded 2-core machine
def test_a_run_killed_while_labelling_resumes_without_repeating_a_label(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    run, counter = tmp_path / "run", tmp_path / "calls.txt"
    args = tiny(run, "learn.max_rounds=1", *probe(counter), "+oracle.sleep_s=0.3")
    command = [sys.executable, "-m", "molsym.cli.main", "learn", *args]
    proc = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    labels = run / "labels.extxyz"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if labels.is_file() and labels.read_bytes().count(b"label_key=") >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # the loop and its oracle workers
    proc.wait()
    done = len(label_keys(run))
    assert 2 <= done < 7  # killed in the middle of the start set
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    keys = label_keys(run)
    assert len(keys) == len(set(keys)) and len(keys) > done
    calls = len(counter.read_text().splitlines())
    # at most the structure in flight at the kill was computed twice (its label never written)
    assert len(keys) <= calls <= len(keys) + 1
    assert (run / "model.pt").is_file()


def test_the_documented_command_parses_and_names_its_own_folder():
    from molsym.cli.learn import quote_smiles
    from molsym.cli.train import precheck
    from molsym.data.recipes import register_resolvers
    from molsym.learning.run_name import register, run_name

    register()
    register_resolvers()
    argv = ["smiles=CC(=O)Oc1ccccc1C(=O)O", "oracle=xtb", "learn.temperature=500",
            "learn.max_labels=600"]
    assert precheck(argv, "learn") is not None  # Hydra's grammar chokes on a bare SMILES
    assert precheck(quote_smiles(argv), "learn") is None
    assert quote_smiles(["smiles='C#N'", "seed=1"]) == ["smiles='C#N'", "seed=1"]
    name = run_name("CC(=O)Oc1ccccc1C(=O)O", "molsym.oracles.XTBOracle")
    assert name == run_name("CC(=O)Oc1ccccc1C(=O)O", "molsym.oracles.XTBOracle")
    assert name.startswith("CCOOc1ccccc1COO-xtb-")
    assert name != run_name("CC(=O)Oc1ccccc1C(=O)O", "molsym.oracles.EMTOracle")
    assert "/" not in run_name("F/C=C/F", "x.EMTOracle")
