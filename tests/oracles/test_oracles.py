"""The oracles themselves: forces are -dE/dx of their own energy, charge and multiplicity
reach the calculator, PySCF matches a direct PySCF call, element checks, Hydra configs."""

from __future__ import annotations

from pathlib import Path

import ase
import numpy as np
import pytest
from ase.build import molecule

from molsym.errors import ConfigError
from molsym.oracles import (
    CalculatorOracle,
    EMTOracle,
    PySCFOracle,
    XTBOracle,
    charge_and_multiplicity,
    check_elements,
    multiplicity_from_smiles,
    run_oracle,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "oracle"


def _water() -> ase.Atoms:
    atoms = molecule("H2O")
    atoms.positions[0, 0] += 0.05  # off the minimum: forces are not all ~0
    atoms.positions[1, 2] -= 0.03
    return atoms


def _fd_forces(oracle, atoms, coords, charge=0, mult=1, h=1e-3) -> np.ndarray:
    """-dE/dx by central differences for the (atom, axis) pairs in ``coords``."""
    out = []
    for i, j in coords:
        e = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.positions[i, j] += sign * h
            e.append(run_oracle(oracle, moved, charge, mult)[0])
        out.append(-(e[0] - e[1]) / (2 * h))
    return np.array(out)


COORDS = [(0, 0), (1, 1), (2, 2), (0, 2)]


@pytest.mark.parametrize(
    "oracle, tol",
    [(EMTOracle(), 1e-4), (XTBOracle(), 1e-4), (PySCFOracle(xc="HF"), 1e-4),
     (PySCFOracle(), 2e-3)],  # PBE: the analytic gradient has no grid response (~2e-4)
    ids=["emt", "xtb", "pyscf-hf", "pyscf-pbe"],
)
def test_forces_are_minus_energy_gradient(oracle, tol):
    atoms = _water()
    energy, forces = run_oracle(oracle, atoms, 0, 1)
    assert np.isfinite(energy) and forces.shape == (3, 3)
    analytic = np.array([forces[i, j] for i, j in COORDS])
    assert np.abs(analytic).max() > 0.05
    np.testing.assert_allclose(_fd_forces(oracle, atoms, COORDS), analytic, atol=tol)


def test_pyscf_matches_direct_pyscf_call():
    from ase import units
    from pyscf import dft, gto

    atoms = _water()
    energy, forces = run_oracle(PySCFOracle(xc="PBE", basis="sto-3g"), atoms, 0, 1)
    mol = gto.M(atom=[(s, tuple(p)) for s, p in zip(atoms.get_chemical_symbols(),
                                                     atoms.positions, strict=True)],
                basis="sto-3g", unit="Angstrom", verbose=0)
    mf = dft.RKS(mol)
    mf.xc, mf.conv_tol = "PBE", 1e-9
    ref = mf.kernel() * units.Hartree
    grad = mf.nuc_grad_method().kernel() * units.Hartree / units.Bohr
    assert energy == pytest.approx(ref, abs=1e-6)
    assert energy == pytest.approx(-75.2 * units.Hartree, rel=1e-2)  # PBE/STO-3G water
    np.testing.assert_allclose(forces, -grad, atol=1e-6)


def test_pyscf_open_shell_runs_uks_and_reports_scf_failure():
    from molsym.oracles import PySCFCalculator, SCFNotConverged

    h = ase.Atoms("H", positions=[[0, 0, 0]])
    e_doublet, _ = run_oracle(PySCFOracle(xc="HF"), h, 0, 2)
    assert e_doublet == pytest.approx(-0.46658 * ase.units.Hartree, abs=1e-3)  # UHF/STO-3G
    water = _water()
    water.calc = PySCFCalculator(xc="PBE", basis="sto-3g", max_cycle=1)
    with pytest.raises(SCFNotConverged, match="not converged in 1 cycles"):
        water.get_potential_energy()


def test_xtb_charge_reaches_the_calculator():
    from molsym.data.readers import read_smiles

    (nh4,) = read_smiles("[NH4+]", num_workers=1)
    assert nh4.info["total_charge"] == 1.0
    assert charge_and_multiplicity(nh4) == (1, 1)
    cation, _ = run_oracle(XTBOracle(), nh4, 1, 1)
    radical, _ = run_oracle(XTBOracle(), nh4, 0, 2)  # the neutral NH4 radical
    assert abs(cation - radical) > 1.0  # eV: an ionisation energy apart
    from tblite.ase import TBLite

    ref = nh4.copy()
    ref.calc = TBLite(method="GFN2-xTB", charge=1, multiplicity=1, verbosity=0)
    assert cation == pytest.approx(ref.get_potential_energy(), abs=1e-8)


def test_multiplicity_from_smiles_radicals():
    assert multiplicity_from_smiles("C") == 1
    assert multiplicity_from_smiles("[CH3]") == 2
    assert multiplicity_from_smiles("[O][O]") == 3
    assert multiplicity_from_smiles("[NH4+]") == 1
    methyl = ase.Atoms("CH3", positions=np.eye(4, 3) * 1.1)
    methyl.info["smiles"] = "[CH3]"
    assert charge_and_multiplicity(methyl) == (0, 2)
    methyl.info["multiplicity"] = 1  # 9 electrons cannot be a singlet
    with pytest.raises(ValueError, match="impossible with 9 electrons"):
        charge_and_multiplicity(methyl)
    del methyl.info["multiplicity"], methyl.info["smiles"]
    assert charge_and_multiplicity(methyl) == (0, 2)  # odd electron count: doublet


@pytest.mark.parametrize(
    "oracle, symbols, note",
    [(EMTOracle(), "CH3F", "EMT covers H, C, N, O"), (XTBOracle(), "OgH2", "Z 1-86"),
     (PySCFOracle(basis="sto-3g"), "XeH2", "basis sto-3g has no functions")],
)
def test_unsupported_element_is_one_line(oracle, symbols, note):
    atoms = ase.Atoms(symbols, positions=np.eye(len(ase.Atoms(symbols)), 3) * 1.5)
    atoms.info["id"] = "in.xyz:7"
    with pytest.raises(ConfigError) as err:
        check_elements(oracle, [molecule("CH4"), atoms])
    message = str(err.value)
    assert "\n" not in message and f"oracle {oracle.name} does not support" in message
    assert "1 of 2 structures" in message and "in.xyz:7" in message and note in message


def test_hydra_configs_build_the_oracles():
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    assert (Path(__file__).resolve().parents[2] / "molsym" / "configs" / "oracle").is_dir()
    expected = {"xtb": XTBOracle(), "pyscf": PySCFOracle(), "emt": EMTOracle()}
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        for name, oracle in expected.items():
            built = instantiate(compose(config_name=name))
            assert built == oracle
            assert instantiate(built.config()) == oracle  # config() rebuilds it


def test_calculator_oracle_wraps_any_ase_calculator():
    from functools import partial

    from ase.calculators.emt import EMT

    oracle = CalculatorOracle(partial(EMT), name="my-emt")
    energy, _ = run_oracle(oracle, molecule("CH4"), 0, 1)
    assert energy == pytest.approx(run_oracle(EMTOracle(), molecule("CH4"), 0, 1)[0])
    assert oracle.config()["factory"]["_target_"].endswith("EMT")


def test_user_calculator_from_hydra_config_labels_in_workers(tmp_path):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from molsym.oracles import label

    cfg = OmegaConf.create({
        "_target_": "molsym.oracles.CalculatorOracle", "name": "my-emt", "elements": ["H", "C"],
        "factory": {"_target_": "ase.calculators.emt.EMT", "_partial_": True},
    })
    oracle = instantiate(cfg)
    assert oracle.elements == ("H", "C") and oracle.config()["elements"] == ["H", "C"]
    report = label([molecule("CH4"), molecule("C2H6")], oracle, tmp_path, workers=2)
    assert report.labelled == 2
    with pytest.raises(ConfigError, match="oracle my-emt does not support O"):
        label([molecule("H2O")], oracle, tmp_path)


def test_missing_package_and_unknown_basis_are_one_line(monkeypatch, tmp_path):
    from molsym.oracles import label

    with pytest.raises(ConfigError, match="no basis set 'no-such-basis'"):
        label([molecule("H2O")], PySCFOracle(basis="no-such-basis"), tmp_path)
    monkeypatch.setitem(__import__("sys").modules, "tblite.ase", None)
    with pytest.raises(ConfigError, match=r"needs tblite: pip install 'molsym\[xtb\]'"):
        label([molecule("H2O")], XTBOracle(), tmp_path)


def test_xtb_scf_not_converged_is_the_reason(tmp_path):
    from molsym.oracles import OracleError, label

    with pytest.raises(OracleError, match="SCF not converged in 1 cycles") as err:
        label([_water()], XTBOracle(max_iterations=1), tmp_path)
    assert "\n" not in str(err.value)
