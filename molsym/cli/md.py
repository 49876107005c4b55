"""``molsym md``: molecular dynamics with a trained model on one structure or SMILES.

    molsym md --model model.pt molecule.xyz --ensemble nvt --temperature 300 --steps 2000
    molsym md --model model.pt "CCO" --ensemble nve --timestep 0.5 -o ethanol_md.extxyz

Writes the trajectory (extxyz, whole frames even if the run is killed), a CSV log of
energies and temperature, and a PNG of the energy drift and temperature. Exit status: 0 the
run finished, 1 it stopped early (the structure fell apart, a non-finite energy or force, a
committee spread past ``--max-forces-std``), 2 usage or input error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from molsym.md.dynamics import ENSEMBLES

LOG_COLUMNS = ("step", "time_fs", "potential_energy", "kinetic_energy", "total_energy",
               "temperature_K", "volume", "energy_std", "forces_std_max")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="molsym md", description="Run MD (ASE) with a trained molsym model.",
        epilog="Exit status: 0 finished, 1 stopped early (message on stderr), 2 usage or "
               "input error, 130 interrupted (the trajectory keeps its whole frames).")
    p.add_argument("--model", "-m", required=True, help="deploy file (model.pt), a committee, "
                                                        "or a bundled model name")
    p.add_argument("input", metavar="INPUT", help="structure file (.xyz/.extxyz/.sdf; "
                   "periodic with a Lattice) or a SMILES string (embedded with RDKit)")
    p.add_argument("--frame", type=int, default=0, help="frame of a multi-frame file (0)")
    p.add_argument("--ensemble", choices=ENSEMBLES, default="nvt")
    p.add_argument("--steps", type=_positive(int), default=1000)
    p.add_argument("--timestep", type=_positive(float), default=0.5, help="fs (0.5)")
    p.add_argument("--temperature", type=_nonnegative, default=300.0,
                   help="K: thermostat target and initial velocities (300)")
    p.add_argument("--initial-temperature", type=_nonnegative, default=None,
                   help="K: initial velocities only (default: --temperature)")
    p.add_argument("--friction", type=_positive(float), default=0.01,
                   help="Langevin friction, 1/fs (nvt; 0.01)")
    p.add_argument("--pressure", type=float, default=1.0, help="bar (npt; 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", type=Path, default=Path("md.extxyz"),
                   help="trajectory (extxyz); the log (.csv) and plot (.png) go next to it")
    p.add_argument("--log-every", type=_positive(int), default=10, help="steps per log line")
    p.add_argument("--traj-every", type=_positive(int), default=10, help="steps per frame")
    p.add_argument("--max-bond-stretch", type=_nonnegative, default=2.0,
                   help="stop when a starting bond is this many times longer (2; 0: never)")
    p.add_argument("--max-forces-std", type=_positive(float), default=None,
                   help="committee: stop when a per-atom force spread exceeds this, eV/Angstrom")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    p.add_argument("--progress", choices=["auto", "always", "never"], default="auto",
                   help="a bar on stderr (auto: on a terminal); log lines on stdout otherwise")
    return p


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value
    return parse


def _nonnegative(text: str) -> float:
    value = float(text)
    if not value >= 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _fail(message: str, status: int = 2) -> int:
    print(f"molsym md: error: {message}", file=sys.stderr)
    return status


def read_structure(arg: str, frame: int):
    """The structure of ``arg`` (file frame ``frame``, or an embedded SMILES) and '' , or
    None and why not."""
    from molsym.inference.inputs import gather, is_file_arg

    entries = gather([arg])
    if not entries:
        return None, f"{arg}: no structure in it"
    if not -len(entries) <= frame < len(entries):
        return None, f"{arg}: --frame {frame}, but it holds {len(entries)} structure(s)"
    entry = entries[frame]
    if entry.error or entry.atoms is None:
        where = entry.id or arg if is_file_arg(arg) else f"SMILES {arg!r}"
        return None, f"{where}: {entry.error}"
    return entry.atoms, ""


def main(argv: list[str] | None = None) -> int:
    """Run ``molsym md``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except KeyboardInterrupt:
        print(f"molsym md: interrupted; the frames so far are in {args.output}", file=sys.stderr)
        return 130


def _outputs(args) -> tuple[Path, Path, Path, str]:
    from molsym.cli.predict import output_problem

    traj = args.output
    log, plot = traj.with_suffix(".csv"), traj.with_suffix(".png")
    if traj.suffix.lower() not in (".extxyz", ".xyz"):
        return traj, log, plot, f"-o {traj}: the trajectory is extxyz (.extxyz or .xyz)"
    for path in (traj, log, plot):
        problem = output_problem(path, [args.input])
        if problem:
            return traj, log, plot, f"{path}: {problem}"
    return traj, log, plot, ""


def _run(args) -> int:
    from molsym.errors import MolsymError
    from molsym.inference.calculator import MolsymCalculator
    from molsym.md.dynamics import initial_velocities, make_dynamics
    from molsym.md.plots import plot_md
    from molsym.md.run import run_md

    traj, log_path, plot_path, problem = _outputs(args)
    if problem:
        return _fail(problem)
    try:
        calc = MolsymCalculator(args.model, device=args.device, dtype=args.dtype)
    except (MolsymError, OSError) as err:
        return _fail(str(err))
    if "forces" not in calc.outputs:
        return _fail(f"{args.model}: the model predicts no forces (outputs: "
                     f"{', '.join(calc.outputs)}); MD needs them")
    atoms, problem = read_structure(args.input, args.frame)
    if problem:
        return _fail(problem)
    atoms = atoms.copy()
    atoms.info = {}
    atoms.calc = calc
    try:
        start_t = args.temperature if args.initial_temperature is None else \
            args.initial_temperature
        initial_velocities(atoms, start_t, args.seed)  # first: NPT copies the momenta
        dynamics = make_dynamics(atoms, args.ensemble, args.timestep, args.temperature,
                                 args.friction, args.pressure, seed=args.seed)
        atoms.get_potential_energy()  # element and input problems before any file is written
    except MolsymError as err:
        return _fail(str(err))
    committee = "forces_std" in calc.results
    print(f"molsym md: {args.ensemble.upper()} of {atoms.get_chemical_formula()} "
          f"({len(atoms)} atoms), {args.steps} steps of {args.timestep:g} fs"
          + (f" at {args.temperature:g} K" if args.ensemble != "nve" else "")
          + (", committee spread logged" if committee else ""), file=sys.stderr)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", buffering=1) as log_file:
        on_record, close = _reporter(args, log_file, len(atoms), committee)
        try:
            result = run_md(atoms, dynamics, args.steps, args.timestep, str(traj),
                            args.log_every, args.traj_every, args.max_bond_stretch,
                            args.max_forces_std, on_record)
        finally:
            close()
    if result.records:
        plot_md(result, len(atoms), plot_path,
                None if args.ensemble == "nve" else args.temperature,
                f"{atoms.get_chemical_formula()} {args.ensemble.upper()}")
    drift = result.drift_meV_per_atom(len(atoms))
    done = (f"{result.steps_done} steps, {result.frames} frames in {traj}; log {log_path}, "
            f"plot {plot_path}")
    if len(drift):
        done += f"; total energy drift {drift[-1]:+.3g} meV/atom"
    if result.stopped:
        at = result.records[-1].time_fs if result.records else 0.0
        print(f"molsym md: stopped at step {result.steps_done} ({at:g} fs): {result.stopped}. "
              f"{done}", file=sys.stderr)
        return 1
    print(f"molsym md: done: {done}", file=sys.stderr)
    return 0


def _reporter(args, log_file, num_atoms: int, committee: bool):
    """``(on_record, close)``: CSV rows to ``log_file``, and a progress bar on a terminal or
    a line per record on stdout."""
    show_bar = args.progress == "always" or (args.progress == "auto" and sys.stderr.isatty())
    log_file.write(",".join(LOG_COLUMNS) + "\n")
    bar = None
    if show_bar:
        from tqdm import tqdm

        bar = tqdm(total=args.steps, unit="step", file=sys.stderr, desc="md")
    first: list[float] = []

    def on_record(record) -> None:
        row = record.row()
        log_file.write(",".join(f"{row[c]:.10g}" for c in LOG_COLUMNS) + "\n")
        if not first:
            first.append(record.total_energy)
        drift = (record.total_energy - first[0]) / num_atoms * 1e3
        spread = f" F_std_max {record.forces_std_max:.3g} eV/A" if committee else ""
        if bar is not None:
            bar.n = record.step
            bar.set_postfix_str(f"T {record.temperature_K:.0f} K, drift {drift:+.2f} "
                                f"meV/atom{spread}")
        else:
            print(f"step {record.step:>8d}  t {record.time_fs:9.1f} fs  "
                  f"Epot {record.potential_energy:14.6f} eV  T {record.temperature_K:8.1f} K  "
                  f"drift {drift:+9.3f} meV/atom{spread}", flush=True)

    return on_record, (bar.close if bar is not None else (lambda: None))
