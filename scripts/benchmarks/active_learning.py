"""Active learning against the conventional recipe, at equal labels (issue 24, section 4).

Independent test sets from the oracle's own MD: GFN2-xTB Langevin MD at 500 K (every 20th
step of 0.5 fs, a seed of ours) and a shifted set at 800 K. The conventional recipe trains the
committee on frames drawn at random from one long xTB MD run at 500 K (another seed); active
learning is ``molsym learn ... oracle=xtb learn.temperature=500``. Both train the same
committee through the CLI (``molsym train`` / ``molsym learn``) and are tested with
``molsym eval``. Reported: energy and force MAE on both test sets against the labels used, the
oracle calls, the wall time split into oracle, training and MD, the committee's Spearman
(spread against the true per-frame force error) on the 800 K set, and whether the final
committee's MD stays intact for ``--stability-ps`` at 500 K.

    python -m scripts.benchmarks.active_learning            # aspirin, the full study
    python -m scripts.benchmarks.active_learning --quick    # ethanol, small budgets
    python -m scripts.benchmarks.active_learning --tag ethylammonium --smiles 'CC[NH3+]' \
        --budgets 50,100,200 --test-frames 200 --max-steps 500   # a second, charged molecule

Every committee member makes at most ``--max-steps`` optimizer steps (batch 5) in each
training, for both recipes and every round of ``molsym learn``; with ``--mace``, MACE (its own
venv, ``peers/mace``) trains on the random recipe's largest training/validation split for the
same number of steps.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from scripts.benchmarks import common

ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"
SAMPLE_EVERY = 20  # MD steps between stored frames
TIMESTEP_FS = 0.5


def xtb_md(smiles: str, temperature: float, frames: int, seed: int, out: Path) -> Path:
    """``frames`` frames (every :data:`SAMPLE_EVERY` steps of 0.5 fs) of GFN2-xTB Langevin MD
    at ``temperature`` K from an ETKDG conformer, with xTB energies (eV) and forces
    (eV/Angstrom), written to ``out`` (reused when it is there)."""
    if out.is_file():
        return out
    import ase.io
    from ase import units
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    from molsym.data.readers import read_smiles
    from molsym.oracles import XTBOracle, charge_and_multiplicity

    atoms = read_smiles([smiles], seed=seed, num_workers=1)[0]
    charge, mult = charge_and_multiplicity(atoms)
    atoms.calc = XTBOracle().calculator(charge, mult)
    rng = np.random.default_rng(seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    dyn = Langevin(atoms, TIMESTEP_FS * units.fs, temperature_K=temperature,
                   friction=0.01 / units.fs, rng=rng)
    dyn.run(50 * SAMPLE_EVERY)  # equilibrate
    stored = []
    for _ in range(frames):
        dyn.run(SAMPLE_EVERY)
        frame = atoms.copy()
        frame.calc = SinglePointCalculator(frame, energy=atoms.get_potential_energy(),
                                           forces=atoms.get_forces())
        frame.info.update({"smiles": smiles, "total_charge": float(charge),
                           "multiplicity": mult})
        stored.append(frame)
    out.parent.mkdir(parents=True, exist_ok=True)
    ase.io.write(out, stored, format="extxyz")
    return out


def molsym_eval(model: Path, data: Path, out: Path, log: Path) -> dict[str, Any]:
    """``molsym eval --model model data -o out`` (reused when ``out`` exists)."""
    if not out.is_file():
        status, _ = common.run_logged([str(common.MOLSYM), "eval", "--model", str(model),
                                       str(data), "-o", str(out)], log)
        if status != 0:
            return {"status": status}
    return json.loads(out.read_text())


def train_overrides(args) -> list[str]:
    """The committee both recipes train (the same model, epochs, steps, members, split
    fractions and early stopping)."""
    steps = [] if args.max_steps is None else [f"trainer.max_steps={args.max_steps}"]
    return [f"model={args.model}", f"ensemble.size={args.members}",
            f"trainer.max_epochs={args.epochs}", *steps, "data.num_val=0.1",
            "data.num_test=0.1", "callbacks.early_stopping.patience=30", f"seed={args.seed}"]


def random_recipe(args, pool: Path, tests: dict[str, Path], root: Path,
                  stored: dict[int, dict]) -> list[dict]:
    """Committees trained on n frames drawn at random (nested) from the 500 K run, per budget.
    A row in ``stored`` (an earlier run's result, by budget) is kept when its run folder is
    gone and it ran the same command; MACE's budget is always trained here (it needs the
    split)."""
    import ase.io

    frames = ase.io.read(pool, index=":")
    order = np.random.default_rng(args.seed).permutation(len(frames))
    rows = []
    for n in args.budgets:
        run_dir = root / f"random_{n}"
        data = root / f"random_{n}.extxyz"
        if not data.is_file():
            ase.io.write(data, [frames[i] for i in order[:n]], format="extxyz")
        overrides = ["data=extxyz", f"data.path={data}", "targets=[energy,forces]",
                     "callbacks.progress_bar=null", *train_overrides(args)]
        earlier = stored.get(n)
        needed = args.mace and n == max(args.budgets)
        if (earlier and not needed and not run_dir.exists()
                and _same_settings(earlier["command"], "molsym train " + shlex.join(overrides))):
            rows.append({**earlier, "reused_from": earlier.get("reused_from", "stored result")})
            continue
        trained = common.molsym_train(run_dir, overrides, None, root / "random.log")
        row = {"labels": n, "train_s": trained.get("wall_s"), "command": trained["command"],
               "oracle_calls": n}
        for name, test in tests.items():
            row[name] = molsym_eval(run_dir / "model.pt", test, run_dir / f"eval_{name}.json",
                                    root / "random.log")
        rows.append(row)
    return rows


def _same_settings(a: str, b: str) -> bool:
    """Whether two ``molsym train`` commands differ at most in where files are (data.path,
    hydra.run.dir: the study's folder may have been given relative or absolute)."""
    def settings(command: str) -> list[str]:
        return [t for t in shlex.split(command)
                if not t.startswith(("data.path=", "hydra.run.dir="))]
    return settings(a) == settings(b)


def active_learning(args, tests: dict[str, Path], root: Path) -> dict[str, Any]:
    """One ``molsym learn`` run up to the largest budget; every round's committee tested."""
    run_dir = root / "learn"
    overrides = [f"smiles={args.smiles}", "oracle=xtb", "learn.temperature=500",
                 f"learn.max_labels={args.learn_max_labels or max(args.budgets)}",
                 *train_overrides(args), *args.learn]
    cmd = [str(common.MOLSYM), "learn", *overrides, f"hydra.run.dir={run_dir}"]
    status, wall = common.run_logged(cmd, root / "learn.log")
    rounds = []
    for path in sorted((run_dir / "rounds").glob("*/round.json"),
                       key=lambda p: int(p.parent.name)):
        record = json.loads(path.read_text())
        model = path.parent / "train" / "model.pt"
        row = {"round": record["round"], "labels": record.get("labels_total"),
               "oracle_s": record.get("oracle_seconds"), "train_s": record.get("train_seconds"),
               "md_s": (record.get("exploration") or {}).get("md_seconds"),
               "stop": record.get("stop")}
        if model.is_file():
            for name, test in tests.items():
                row[name] = molsym_eval(model, test, path.parent / f"eval_{name}.json",
                                        root / "learn.log")
        rounds.append(row)
    failures = run_dir / "failures.jsonl"
    labels = sum(1 for line in (run_dir / "labels.extxyz").open() if "label_key=" in line)
    failed = sum(1 for _ in failures.open()) if failures.is_file() else 0
    calls = labels + failed
    return {"command": "molsym learn " + " ".join(overrides), "status": status,
            "wall_s": round(wall, 1), "rounds": rounds, "labels": labels,
            "oracle_calls": calls, "model": str(run_dir / "model.pt")}


def mace_at(args, n: int, tests: dict[str, Path], root: Path) -> dict[str, Any]:
    """MACE on the training/validation frames of the random recipe's committee at ``n``
    labels (its splits.json), for as many optimizer steps as one committee member made."""
    from molsym.data.readers import read_file  # labels in info/arrays (ase.io.read: calc)
    from scripts.benchmarks import data_efficiency_mace as de_mace
    from scripts.benchmarks import mace_peer

    run_dir = root / f"random_{n}"
    splits = json.loads(next(run_dir.rglob("splits.json")).read_text())
    frames = read_file(root / f"random_{n}.extxyz")
    out = root / f"mace_{n}"
    train = mace_peer.write_extxyz([frames[i] for i in splits["train"]], out / "train.xyz")
    valid = mace_peer.write_extxyz([frames[i] for i in splits["val"]], out / "valid.xyz")
    steps = args.max_steps or 2000
    epochs = de_mace.epochs_for(steps, len(splits["train"]))
    trained = mace_peer.train(out / "run", train, valid, None, batch_size=5, max_epochs=epochs,
                              eval_interval=10, patience=100000)
    row: dict[str, Any] = {"labels": n, "epochs": epochs, "train_s": trained["wall_s"],
                           "command": trained["command"]}
    for name, test in tests.items():
        test_xyz = mace_peer.write_extxyz(read_file(test), out / f"{name}.xyz")
        if trained["model"]:
            row[name] = mace_peer.evaluate(Path(trained["model"]), test_xyz,
                                           out / f"pred_{name}.xyz", out / "eval.log")
    return row


def stability(model: Path, start: Path, ps: float, seed: int) -> dict[str, Any]:
    """Langevin MD at 500 K with ``model`` from the first test frame for ``ps`` picoseconds;
    intact unless a bond of the start frame stretches past 1.6x or atoms collapse."""
    import ase.io
    from ase import units
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    from molsym.inference.calculator import MolsymCalculator
    from molsym.learning.explosion import ExplosionCheck

    atoms = ase.io.read(start, index=0)
    atoms.calc = MolsymCalculator(str(model), dtype="float64")
    check = ExplosionCheck(atoms, explode_at=float("inf"), bond_stretch=1.6)
    rng = np.random.default_rng(seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=500, rng=rng)
    dyn = Langevin(atoms, TIMESTEP_FS * units.fs, temperature_K=500,
                   friction=0.01 / units.fs, rng=rng)
    steps = int(round(ps * 1000 / TIMESTEP_FS))
    t0 = time.perf_counter()
    for done in range(0, steps, 100):
        dyn.run(min(100, steps - done))
        reason = check.reason(atoms, 0.0)
        if reason is not None:
            return {"ps": ps, "intact": False, "broke_at_ps": (done + 100) * TIMESTEP_FS / 1000,
                    "reason": reason, "md_s": round(time.perf_counter() - t0, 1)}
    return {"ps": ps, "intact": True, "md_s": round(time.perf_counter() - t0, 1)}


def forces_mae(metrics: dict) -> float | None:
    forces = metrics.get("forces") if isinstance(metrics, dict) else None
    return None if not forces else float(forces["mae"])


def energy_mae(metrics: dict) -> float | None:
    if not isinstance(metrics, dict):
        return None
    energy = metrics.get("energy_per_atom") or metrics.get("energy")
    return None if not energy else float(energy["mae"])


def report(result: dict[str, Any]) -> str:
    """The markdown section of docs/benchmarks.md."""
    rows = []
    for row in result["random"]:
        rows.append(["random 500 K MD", row["labels"], *_errors(row), row["oracle_calls"],
                     f"train {row['train_s'] or 0:.0f} s" if row.get("train_s") else
                     "train (run folder reused)"])
    for row in result.get("controls", []):  # e.g. the random recipe with more steps
        rows.append([row["recipe"], row["labels"], *_errors(row), row["labels"],
                     f"train {row['train_s'] or 0:.0f} s"])
    for row in result.get("mace", []):
        rows.append(["MACE, random 500 K MD", row["labels"], *_errors(row), row["labels"],
                     f"train {row['train_s'] or 0:.0f} s"])
    for row in result["active"]["rounds"]:
        times = ", ".join(f"{what} {row[key]:.0f} s" for key, what in
                          (("oracle_s", "oracle"), ("train_s", "train"), ("md_s", "MD"))
                          if row.get(key) is not None)
        rows.append([f"molsym learn, round {row['round']}", row["labels"], *_errors(row),
                     row["labels"], times])
    header = ["recipe", "labels", "force MAE 500 K (meV/Å)", "energy MAE 500 K (meV/atom)",
              "force MAE 800 K (meV/Å)", "energy MAE 800 K (meV/atom)", "oracle calls", "time"]
    calib = (result["active"]["rounds"][-1].get("test_800K") or {}).get("calibration", {})
    spearman = (calib.get("forces") or {}).get("spearman")
    lines = [common.env_line(result["environment"]), "",
             f"Molecule `{result['smiles']}`; test sets of {result['test_frames']} frames of "
             "GFN2-xTB Langevin MD (every 20th step of 0.5 fs) at 500 K and 800 K; committee "
             f"of {result['members']} `model={result['model']}` members, "
             f"{result['epochs']} epochs, at most {result.get('max_steps')} optimizer steps "
             "per member and training, for both recipes. `molsym learn` warm-starts each "
             "round from the last committee, so round k's members have had up to (k + 1) "
             "times as many steps in all as a random-recipe committee.", "",
             common.md_table(header, rows), "", *_reused(result),
             f"molsym learn: {result['active']['labels']} labels, "
             f"{result['active']['oracle_calls']} oracle calls; oracle "
             f"{_total(result, 'oracle_s')} s, training {_total(result, 'train_s')} s, MD "
             f"{_total(result, 'md_s')} s over "
             f"its rounds. Spearman (largest per-atom force spread against the per-frame force "
             f"error, 800 K set, last committee): {_round(spearman)}. "
             f"MD of the final committee at 500 K: {result['stability']}.", "",
             f"Command: `{result.get('command', 'python -m scripts.benchmarks.active_learning')}`"
             ".", "", *[f"{row['recipe']}: `{row['command']}`." for row in
                        result.get("controls", [])]]
    return "\n".join(lines)


def _total(result: dict[str, Any], key: str) -> int:
    return round(sum(r.get(key) or 0 for r in result["active"]["rounds"]))


def _reused(result: dict[str, Any]) -> list[str]:
    reused = [row for row in result["random"] if row.get("reused_from")]
    if not reused:
        return []
    budgets = ", ".join(str(row["labels"]) for row in reused)
    return [f"Random-recipe rows at {budgets} labels are kept from the run of "
            f"{reused[0]['reused_from']} (same command; the test sets and the pool are "
            "regenerated from the same seeds).", ""]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _errors(row: dict) -> list[Any]:
    out = []
    for name in ("test_500K", "test_800K"):
        m = row.get(name) or {}
        f, e = forces_mae(m), energy_mae(m)
        out += [None if f is None else round(f, 1), None if e is None else round(e, 2)]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="ethanol, budgets 25,50, 60 test frames, 2 small members, 1 ps MD")
    parser.add_argument("--smiles", default=None)
    parser.add_argument("--budgets", default=None, help="comma-separated label counts")
    parser.add_argument("--test-frames", type=int, default=None)
    parser.add_argument("--members", type=int, default=None)
    parser.add_argument("--model", default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--stability-ps", type=float, default=None)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--max-steps", type=int, default=None,
                        help="optimizer steps per member and training (trainer.max_steps)")
    parser.add_argument("--learn-max-labels", type=int, default=None,
                        help="molsym learn's label budget (default: the largest budget)")
    parser.add_argument("--mace", action="store_true",
                        help="MACE on the random frames at the largest budget, equal steps")
    parser.add_argument("--learn", nargs="*", default=[], help="extra molsym learn overrides")
    parser.add_argument("--reuse-stored", action="store_true",
                        help="keep the stored random-recipe rows whose runs are gone "
                             "(same command; the test sets are regenerated from their seeds)")
    parser.add_argument("--tag", default=None,
                        help="a second study beside the first (another molecule): results "
                             "active_learning_<tag>.json, runs and docs section of its own")
    parser.add_argument("--report-only", action="store_true",
                        help="print the section of the stored result, run nothing")
    args = parser.parse_args(argv)
    quick = {"smiles": "CCO", "budgets": "25,50", "test_frames": 60, "members": 2,
             "model": "small", "epochs": 60, "stability_ps": 1.0}
    full = {"smiles": ASPIRIN, "budgets": "50,100,200,400,950", "test_frames": 500,
            "members": 4, "model": "default", "epochs": 500, "stability_ps": 10.0}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.budgets = [int(b) for b in str(args.budgets).split(",")]
    name = "active_learning_quick" if args.quick else "active_learning"
    if args.tag:
        name = f"{name}_{args.tag}"
    if args.report_only:
        print(report(common.load_result(name)))
        return 0
    root = common.RUNS / name
    root.mkdir(parents=True, exist_ok=True)
    env = common.environment()
    t0 = time.perf_counter()
    tests = {f"test_{t}K": xtb_md(args.smiles, t, args.test_frames, 1000 + t,
                                  root / f"test_{t}K.extxyz") for t in (500, 800)}
    pool = xtb_md(args.smiles, 500, 2 * max(args.budgets), 1003, root / "pool_500K.extxyz")
    md_s = time.perf_counter() - t0
    command = "python -m scripts.benchmarks.active_learning " + shlex.join(
        argv if argv is not None else sys.argv[1:])
    result: dict[str, Any] = {"environment": env, "command": command, "smiles": args.smiles,
                              "test_frames": args.test_frames, "members": args.members,
                              "model": args.model, "epochs": args.epochs,
                              "budgets": args.budgets, "max_steps": args.max_steps,
                              "xtb_md_s": round(md_s, 1)}
    stored = {}
    if args.reuse_stored:
        earlier = common.load_result(name) or {"random": []}
        stored = {row["labels"]: {**row, "reused_from": row.get(
            "reused_from", f"{earlier['environment']['date']} "
                           f"(commit {earlier['environment']['molsym_commit']})")}
                  for row in earlier.get("random", [])}
    result["random"] = random_recipe(args, pool, tests, root, stored)
    common.save_result(name, result)
    if args.mace:
        result["mace"] = [mace_at(args, max(args.budgets), tests, root)]
        common.save_result(name, result)
    result["active"] = active_learning(args, tests, root)
    model = Path(result["active"]["model"])
    result["stability"] = (stability(model, tests["test_500K"], args.stability_ps, args.seed)
                           if model.is_file() else {"error": "no model"})
    path = common.save_result(name, result)
    section = report(result)
    print(section)
    if not args.quick:
        common.write_section("Active learning" + (f": {args.smiles}" if args.tag else ""),
                             section)
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
