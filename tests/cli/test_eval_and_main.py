"""`molsym eval` (table, JSON, parity plots) and the `molsym` dispatcher."""

import json

import ase.io
import pytest

from molsym.cli import main as cli_main


def test_eval_on_the_test_frames_reproduces_the_run_metrics(trained_run, emt_xyz, tmp_path,
                                                            capsys):
    from molsym.cli.eval import main

    test_idx = json.loads((trained_run / "splits.json").read_text())["test"]
    frames = ase.io.read(emt_xyz, index=":")
    data = tmp_path / "test.extxyz"
    ase.io.write(data, [frames[i] for i in test_idx], format="extxyz")
    out = tmp_path / "eval" / "metrics.json"
    assert main(["--model", str(trained_run / "model.pt"), str(data), "-o", str(out)]) == 0
    got = json.loads(out.read_text())
    ref = json.loads((trained_run / "metrics.json").read_text())
    assert set(got) >= {"energy", "energy_per_atom", "forces"}
    for key in ("energy", "forces"):
        assert got[key]["unit"] == ref[key]["unit"]
        assert got[key]["mae"] == pytest.approx(ref[key]["mae"], rel=1e-4)
        assert got[key]["rmse"] >= got[key]["mae"]
    for key in ("energy", "forces"):
        png = out.parent / f"metrics_parity_{key}.png"
        assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG"
    assert "meV/Angstrom" in capsys.readouterr().out


def test_eval_errors(trained_run, tmp_path, capsys):
    from molsym.cli.eval import main

    assert main(["--model", str(tmp_path / "none.pt"), str(tmp_path / "x.xyz")]) == 2
    bad = tmp_path / "water.extxyz"
    from ase.build import molecule

    atoms = molecule("NH3")
    atoms.info["energy"] = 1.0
    ase.io.write(bad, atoms, format="extxyz")
    assert main(["--model", str(trained_run / "model.pt"), str(bad)]) == 1
    assert "not covered" in capsys.readouterr().err


def test_dispatcher(capsys, monkeypatch):
    assert cli_main.main(["--version"]) == 0
    assert cli_main.main(["frobnicate"]) == 2
    monkeypatch.setitem(cli_main.COMMANDS, "frobnicate", "not written yet")
    assert cli_main.main(["frobnicate"]) == 2
    assert "not available yet" in capsys.readouterr().err
    assert cli_main.main([]) == 2
