"""Flagship variants against MACE (scripts/benchmarks/flagship_vs_mace.py): ethanol gets the
aspirin protocol's splits, the variant overrides win over the protocol's, and the report's
ratios follow the numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts.benchmarks import data_efficiency
from scripts.benchmarks import flagship_vs_mace as fvm


def test_rmd17_molecule_of_a_study():
    assert data_efficiency.rmd17_molecule("aspirin_cut4") == "aspirin"
    assert data_efficiency.rmd17_molecule("ethanol") == "ethanol"
    assert data_efficiency.rmd17_molecule("qm9_u0") is None


def test_ethanol_runs_read_ethanol_with_the_aspirin_split_and_variant_overrides_win(tmp_path):
    protocol = [*data_efficiency.protocol_overrides(3000, True, "cosine"),
                *fvm.VARIANTS["forces_heavy"], "module.compile=false"]
    args = data_efficiency.overrides("ethanol", "default", 25, tmp_path, 0, protocol)
    assert "data.molecule=ethanol" in args
    assert "module.compile=false" in args and "module.compile=true" not in args
    assert "module.loss.weights.energy=1" in args
    split = json.loads(Path(next(a for a in args if "split_file=" in a).split("=", 1)[1])
                       .read_text())
    assert len(split["train"]) == 25 and len(split["val"]) == 50 and len(split["test"]) == 250
    assert not set(split["train"]) & set(split["val"])


def _run(forces: float, energy: float) -> dict:
    return {"metrics": {"forces": {"mae": forces}, "energy": {"mae": energy}}, "wall_s": 10.0}


def test_report_ratios_and_missing_mace():
    results = {"max_steps": 3000, "history": [{"command": "cmd-a", "env": {}}],
               "runs": {"ethanol": {"mace": {"25": _run(40.0, 10.0)},
                                    "baseline": {"25": _run(50.0, 5.0), "50": _run(30.0, 4.0)}}}}
    text = fvm.report(results)
    rows = {line.split("|")[2].strip(): [c.strip() for c in line.split("|")[3:-1]]
            for line in text.splitlines() if line.startswith("| baseline")}
    assert rows["25"][:6] == ["50", "40", "1.25", "5", "10", "0.5"]
    assert rows["50"][1] == "–" and rows["50"][2] == "–"
    assert "`cmd-a`" in text


def test_variant_names_take_a_seed_and_unknown_ones_fail():
    from scripts.benchmarks.flagship_vs_mace import VARIANTS, variant_overrides

    assert variant_overrides("radial3") == VARIANTS["radial3"]
    assert variant_overrides("radial3@s2") == [*VARIANTS["radial3"], "seed=2"]
    assert variant_overrides("baseline@s1") == ["seed=1"]
    for bad in ("radial4", "radial3@s", "radial3@sx", "radial3@2"):
        with pytest.raises(ValueError, match="unknown variant"):
            variant_overrides(bad)


def test_mace_seeds_are_mace_and_report_as_rows_against_seed_0():
    assert fvm.mace_seed("mace") == 0 and fvm.mace_seed("mace@s1") == 1
    assert not fvm.is_mace("mace@sx") and not fvm.is_mace("baseline") and not fvm.is_mace("mace1")
    results = {"runs": {"aspirin": {"mace": {"25": _run(80.0, 40.0)},
                                    "mace@s1": {"25": _run(88.0, 44.0)}}}}
    row = next(line for line in fvm.report(results).splitlines() if line.startswith("| mace@s1"))
    assert [c.strip() for c in row.split("|")[3:7]] == ["88", "80", "1.1", "44"]


def test_an_unknown_variant_is_a_usage_error_before_any_run(capsys):
    with pytest.raises(SystemExit) as exit_info:
        fvm.main(["--variants", "mace@sx", "--report-only"])
    assert exit_info.value.code == 2
    assert "unknown variant 'mace@sx'" in capsys.readouterr().err
