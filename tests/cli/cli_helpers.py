"""Helpers of the CLI tests: EMT-labelled frames and the overrides of a seconds-long run."""

import ase.io
import numpy as np
from ase.build import molecule
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator


def write_emt_frames(path, n=40, seed=0, name="CH3CH2OH"):
    """``n`` rattled copies of ``name`` with EMT energies (eV) and forces (eV/Angstrom)."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        atoms = molecule(name)
        atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
        atoms.calc = EMT()
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
        frames.append(atoms)
    ase.io.write(path, frames, format="extxyz")
    return path


def tiny_args(data, run_dir, *extra):
    """Overrides for a seconds-long run: 24 train / 8 val / 8 test frames, a small model, no
    torch.compile (it would take longer than the training)."""
    return [f"data.path={data}", "data.num_train=24", "data.num_val=8", "data.batch_size=8",
            "model=small", "model.num_channels=8", "model.radial_hidden=16",
            "trainer.max_epochs=1", "callbacks.progress_bar.refresh_rate=100",
            "module.compile=false",
            f"hydra.run.dir={run_dir}", *extra]


def compose_train_config(overrides):
    """``train.yaml`` composed with ``overrides`` (molsym's resolvers registered), for tests
    that call ``molsym.training.run.train`` in-process."""
    from hydra import compose, initialize_config_dir

    from molsym.cli.train import CONFIG_DIR, CONFIG_NAME
    from molsym.data.recipes import register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name=CONFIG_NAME, overrides=list(overrides))


def tiny_train_config(data, run_dir, *extra):
    """The in-process twin of :func:`tiny_args`: its overrides (``hydra.*`` left out, the
    caller passes ``run_dir`` to ``train``) plus ``extra``, composed."""
    args = [a for a in tiny_args(data, run_dir) if not a.startswith("hydra.")]
    return compose_train_config([*args, *extra])
