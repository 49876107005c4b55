"""The MACE data-efficiency comparison (scripts/benchmarks/data_efficiency_mace.py): equal
optimizer steps for MACE, its splits identical to the molsym study's, and its report's ratios."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts.benchmarks import data_efficiency
from scripts.benchmarks import data_efficiency_mace as de_mace


@pytest.mark.parametrize("steps,n,epochs", [(3000, 25, 600), (3000, 50, 300), (12000, 950, 64),
                                            (20, 25, 4), (3, 25, 1)])
def test_epochs_give_at_least_the_steps_of_a_molsym_run(steps, n, epochs):
    assert de_mace.epochs_for(steps, n) == epochs
    per_epoch = de_mace.steps_per_epoch(n)
    assert per_epoch == len(range(0, n, de_mace.BATCH_SIZE))
    assert epochs * per_epoch >= steps > (epochs - 1) * per_epoch


@pytest.mark.skipif(not (de_mace.common.DATA / "rmd17").is_dir(),
                    reason="reference data ../shared/data/rmd17 absent")
def test_mace_and_molsym_runs_see_the_same_frames(tmp_path):
    """The split MACE's extxyz files are written from is the one molsym's run of the same N
    gets (both through data_efficiency.split_file)."""
    molsym_args = de_mace.data_efficiency.overrides(
        "aspirin", "default", 25, tmp_path / "flagship" / "25", 0,
        data_efficiency.protocol_overrides(100, True, "cosine"))
    split_arg = next(a for a in molsym_args if "data.split_file=" in a)
    molsym_split = json.loads(Path(split_arg.split("=", 1)[1]).read_text())
    paths = de_mace.write_point(tmp_path / "mace" / "25", 25)
    mace_split = json.loads((tmp_path / "mace" / "25" / "split.json").read_text())
    assert mace_split == molsym_split
    ase_io = pytest.importorskip("ase.io")
    train = ase_io.read(paths["train"], ":")
    test = ase_io.read(paths["test"], ":")
    assert len(train) == 25 and len(test) == len(molsym_split["test"]) == 250
    assert all("REF_forces" in a.arrays for a in train)


def _run(mae: float) -> dict:
    return {"metrics": {"forces": {"mae": mae}}, "wall_s": 10.0}


def test_report_ratios_missing_points_and_one_table_per_cutoff():
    at5 = {"max_steps": 3000, "eval_interval": 10, "command": "cmd", "env": {},
           "runs": {"mace": {"25": _run(60.0), "50": _run(40.0)},
                    "flagship": {"25": _run(80.0)},
                    "invariant": {"25": _run(180.0), "50": _run(120.0)}}}
    at4 = {**at5, "runs": {"mace": {"25": _run(50.0)}, "invariant": {"25": _run(175.0)}}}
    text = de_mace.report({"cutoffs": {"4.0": at4, "5.0": at5}})
    assert text.index("Cutoff 5 Å") < text.index("Cutoff 4 Å")
    first, second = text.split("Cutoff 4 Å")
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in first.splitlines() if line.startswith(("| 25", "| 50"))}
    assert rows["25"][:6] == ["60", "80", "180", "3", "2.25", "1.33"]
    assert rows["50"][1] == "–" and rows["50"][3] == "3"
    row4 = next(line for line in second.splitlines() if line.startswith("| 25"))
    assert [c.strip() for c in row4.split("|")[2:6]] == ["50", "–", "175", "3.5"]


@pytest.mark.parametrize("maes,words", [
    ((60.0, 80.0, 180.0), ("MACE reaches", "flagship does not reach", "behind MACE")),
    ((80.0, 60.0, 180.0), ("MACE does not reach", "flagship reaches", "ahead of MACE")),
    ((80.0, 78.0, 180.0), ("does not reach", "level with MACE", "0.97)")),
])
def test_verdict_follows_the_numbers(maes, words):
    mace, flag, inv = maes
    entry = {"runs": {"mace": {"25": _run(mace)}, "flagship": {"25": _run(flag)},
                      "invariant": {"25": _run(inv)}}}
    text = de_mace.verdict(entry, 5.0)
    for w in words:
        assert w in text, (w, text)
    assert de_mace.verdict({"runs": {"mace": {"25": _run(mace)}}}, 5.0) == ""


def test_every_command_that_made_a_table_is_listed():
    runs = {"mace": {"25": _run(60.0)}, "flagship": {"25": _run(80.0)},
            "invariant": {"25": _run(180.0)}}
    old = {"runs": runs, "command": "cmd-a", "env": None}
    assert [h["command"] for h in de_mace.history(old)] == ["cmd-a"]
    new = {"runs": runs, "history": [{"command": "cmd-a", "env": None},
                                     {"command": "cmd-b", "env": None}]}
    text = de_mace.cutoff_table(new, 5.0)
    assert "`cmd-a`" in text and "`cmd-b`" in text
