"""label(): worker processes, failures recorded and skipped, resume after a kill or a torn
last frame without repeating finished work, one-line errors, frames that read back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import ase
import numpy as np
import pytest
from ase.build import molecule

from molsym.data.readers import read_file
from molsym.errors import ConfigError
from molsym.oracles import EMTOracle, OracleError, XTBOracle, label, run_oracle
from molsym.oracles.store import LabelStore
from tests.oracles.helpers import ProbeOracle, calls

ROOT = Path(__file__).resolve().parents[2]


def _methanes(n: int, seed: int = 0) -> list[ase.Atoms]:
    """``n`` distinct CH4 geometries (5 atoms each), ids ``m<k>``."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        atoms = molecule("CH4")
        atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
        atoms.info["id"] = f"m{k}"
        atoms.info["smiles"] = "C"
        out.append(atoms)
    return out


def _failures(out: Path) -> list[dict]:
    path = out / "failures.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _frames_on_disk(labels: Path) -> int:
    return labels.read_text().count("label_key=") if labels.exists() else 0


def test_labels_read_back_as_training_data(tmp_path):
    structures = _methanes(3)
    structures[0].info["name"] = 'two\nlines "quoted"'  # stays one comment line
    report = label(structures, EMTOracle(), tmp_path, workers=2)
    assert (report.labelled, report.failed, report.total_labelled) == (3, 0, 3)
    frames = read_file(tmp_path / "labels.extxyz")
    by_id = {f.info["structure_id"]: f for f in frames}
    for atoms in structures:
        frame = by_id[atoms.info["id"]]
        energy, forces = run_oracle(EMTOracle(), atoms, 0, 1)
        assert frame.info["energy"] == pytest.approx(energy, abs=1e-8)  # eV
        np.testing.assert_allclose(frame.arrays["forces"], forces, atol=1e-7)  # eV/Angstrom
        assert frame.info["total_charge"] == 0 and frame.info["multiplicity"] == 1
        assert frame.info["oracle"] == "emt" and frame.info["smiles"] == "C"
        assert json.loads(frame.info["oracle_config"]) == EMTOracle().config()
    assert by_id["m0"].info["name"] == 'two lines "quoted"'


def test_failure_recorded_and_skipped_rest_labelled(tmp_path):
    collapsed = ase.Atoms("CO", positions=[[0, 0, 0], [0, 0, 0]])  # EMT: NaN forces
    collapsed.info["id"] = "collapsed"
    structures = [*_methanes(3), collapsed]
    report = label(structures, EMTOracle(), tmp_path, workers=2)
    assert (report.labelled, report.failed) == (3, 1)
    (record,) = _failures(tmp_path)
    assert record["id"] == "collapsed" and "non-finite forces" in record["reason"]
    assert record["oracle"] == "emt"
    again = label(structures, EMTOracle(), tmp_path, workers=2)
    assert (again.labelled, again.failed, again.skipped) == (0, 0, 4)
    assert len(read_file(tmp_path / "labels.extxyz")) == 3


def test_worker_crash_and_timeout_are_failures(tmp_path):
    h2 = ase.Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])  # 2 atoms: crashes the worker
    h2.info["id"] = "crash"
    ethane = molecule("C2H6")  # 8 atoms: hangs
    ethane.info["id"] = "hang"
    oracle = ProbeOracle(crash_on=2, hang_on=8)
    report = label([h2, ethane, *_methanes(3)], oracle, tmp_path, workers=2, timeout_s=3)
    assert (report.labelled, report.failed) == (3, 2)
    reasons = {r["id"]: r["reason"] for r in _failures(tmp_path)}
    assert reasons == {"crash": "worker process died (exit code 3)", "hang": "timeout after 3 s"}


def test_every_structure_failing_is_one_line_error(tmp_path):
    with pytest.raises(OracleError) as err:
        label(_methanes(3), ProbeOracle(fail_all=True), tmp_path, workers=2)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("oracle probe failed on all 3 structures, nothing labelled")
    assert "CalculationFailed: SCF not converged" in message
    assert len(_failures(tmp_path)) == 3  # recorded all the same
    with pytest.raises(OracleError, match="failed in earlier runs"):
        label(_methanes(3), ProbeOracle(fail_all=True), tmp_path, workers=2)


def test_unsupported_element_raises_before_anything_runs(tmp_path):
    chloro = molecule("CH3Cl")
    chloro.info["id"] = "in.xyz:4"
    counter = tmp_path / "calls"
    with pytest.raises(ConfigError) as err:
        label([*_methanes(2), chloro], EMTOracle(), tmp_path / "out")
    assert "\n" not in str(err.value) and "does not support Cl (Z=17)" in str(err.value)
    assert not (tmp_path / "out" / "labels.extxyz").exists()
    report = label([*_methanes(2), chloro], ProbeOracle(counter=str(counter)), tmp_path / "out",
                   on_unsupported="skip")
    assert (report.labelled, report.failed, calls(counter)) == (2, 1, 2)


def test_charged_structure_refused_by_chargeless_oracle(tmp_path):
    ion = molecule("NH3")
    ion.info.update(id="ion", total_charge=1.0, multiplicity=2)
    report = label([ion, *_methanes(1)], EMTOracle(), tmp_path)
    assert (report.labelled, report.failed) == (1, 1)
    assert "takes no charge or spin" in _failures(tmp_path)[0]["reason"]


def test_charge_and_multiplicity_reach_xtb_and_the_frames(tmp_path):
    from molsym.data.readers import read_smiles

    structures = read_smiles(["[NH4+]", "[CH3]"], num_workers=1)
    label(structures, XTBOracle(), tmp_path, workers=2)
    frames = {f.info["smiles"]: f for f in read_file(tmp_path / "labels.extxyz")}
    assert frames["[NH4+]"].info["total_charge"] == 1.0
    assert frames["[NH4+]"].info["multiplicity"] == 1
    assert frames["[CH3]"].info["multiplicity"] == 2
    for smiles, charge, mult in (("[NH4+]", 1, 1), ("[CH3]", 0, 2)):
        ref, _ = run_oracle(XTBOracle(), frames[smiles], charge, mult)
        assert frames[smiles].info["energy"] == pytest.approx(ref, abs=1e-5)


_KILLED_RUN = """
import sys
from tests.oracles.helpers import ProbeOracle
from tests.oracles.test_labelling import _methanes
from molsym.oracles import label
label(_methanes(8), ProbeOracle(counter=sys.argv[2], sleep_s=0.4), sys.argv[1], workers=2)
"""


def test_killed_run_resumes_without_recomputing(tmp_path):
    out, labels = tmp_path / "out", tmp_path / "out" / "labels.extxyz"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_RUN, str(out), str(tmp_path / "c1")],
                            cwd=ROOT, env=env)
    deadline = time.time() + 60
    while time.time() < deadline and _frames_on_disk(labels) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = len(read_file(labels))
    assert 2 <= before < 8
    counter = tmp_path / "c2"
    report = label(_methanes(8), ProbeOracle(counter=str(counter)), out, workers=2)
    assert (report.labelled, report.skipped, calls(counter)) == (8 - before, before, 8 - before)
    frames = read_file(labels)
    assert len(frames) == 8 and len({f.info["label_key"] for f in frames}) == 8
    assert label(_methanes(8), ProbeOracle(counter=str(counter)), out).labelled == 0
    assert calls(counter) == 8 - before


def test_torn_last_frame_is_dropped_on_restart(tmp_path):
    structures = _methanes(3)
    label(structures, EMTOracle(), tmp_path)
    labels = tmp_path / "labels.extxyz"
    data = labels.read_bytes()
    labels.write_bytes(data[:-40])  # the last frame loses its last atom line and a half
    counter = tmp_path / "calls"
    report = label(structures, ProbeOracle(counter=str(counter)), tmp_path / "probe")
    assert report.labelled == 3  # another oracle config: another folder
    report = label(structures, EMTOracle(), tmp_path)
    assert (report.labelled, report.skipped) == (1, 2)
    frames = read_file(labels)
    assert len(frames) == 3 and len({f.info["label_key"] for f in frames}) == 3
    assert labels.read_bytes()[: len(data) - 200] == data[: len(data) - 200]


def test_damage_before_the_last_frame_is_an_error_not_a_cut(tmp_path):
    label(_methanes(3), EMTOracle(), tmp_path)
    labels = tmp_path / "labels.extxyz"
    lines = labels.read_text().splitlines(keepends=True)
    del lines[3]  # an atom line of the first frame
    labels.write_text("".join(lines))
    size = labels.stat().st_size
    with pytest.raises(OracleError, match="is damaged at"):
        label(_methanes(3), EMTOracle(), tmp_path)
    assert labels.stat().st_size == size


def test_other_oracle_config_and_second_writer_are_refused(tmp_path):
    label(_methanes(1), XTBOracle(), tmp_path)
    with pytest.raises(OracleError, match="another oracle config"):
        label(_methanes(1), XTBOracle(accuracy=0.1), tmp_path)
    with LabelStore(tmp_path), pytest.raises(OracleError, match="another labelling run"):
        label(_methanes(1), XTBOracle(), tmp_path)


def test_retry_failed_and_worker_threads(tmp_path, monkeypatch):
    counter, out = tmp_path / "calls", tmp_path / "out"
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    slow = ProbeOracle(counter=str(counter), sleep_s=30)  # same config as ProbeOracle()
    with pytest.raises(OracleError, match="timeout after 0.5 s"):
        label(_methanes(2), slow, out, workers=2, timeout_s=0.5)
    threads = max(1, (os.cpu_count() or 1) // 2)
    assert counter.read_text().split() == ["5", str(threads)] * 2  # unset: a share of cores
    assert "OMP_NUM_THREADS" not in os.environ
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    fast = ProbeOracle(counter=str(counter))
    with pytest.raises(OracleError, match="failed in earlier runs"):
        label(_methanes(2), fast, out, workers=2)
    report = label(_methanes(2), fast, out, workers=2, retry_failed=True)
    assert (report.labelled, calls(counter)) == (2, 4)
    assert counter.read_text().split()[-2:] == ["5", "1"]
