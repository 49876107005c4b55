"""Accuracy on rMD17: molsym's flagship vs mace-torch, NequIP and SchNetPack under the same CPU
budget.

Standard protocol: train 950 / validate 50 frames of ``rmd17_<mol>_train_01``, test on all
1000 frames of ``rmd17_<mol>_test_01``. molsym trains through ``molsym train experiment=rmd17``;
MACE, NequIP and SchNetPack (PaiNN) train on the very same 950/50 frames (molsym's splits.json)
through their own machinery, ``mace_run_train``, ``nequip-train`` and SchNetPack's
``AtomisticTask`` with a Lightning ``Trainer``. The runs go one after the other, each with the
same wall-clock budget and thread count. Finished runs in the run folder are reused, so adding
a peer later trains only that peer.

    python -m scripts.benchmarks.accuracy --molecules aspirin --budget-min 25
    python -m scripts.benchmarks.accuracy --quick          # CI-sized check (50 frames, 1 min)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from scripts.benchmarks import common, mace_peer, nequip_peer, schnetpack_peer

#: Published, GPU-converged force MAE on rMD17 aspirin (meV/Angstrom; 950 training frames).
PUBLISHED = {"aspirin": {"MACE": 6.6, "Allegro": 7.3, "NequIP": 8.2, "TensorNet": 8.9}}


def npz(molecule: str, part: str) -> Path:
    return common.DATA / "rmd17" / f"rmd17_{molecule}_{part}_01.npz"


def budget_of(results: dict[str, Any], mol: str) -> float:
    """Wall-clock minutes each model had for ``mol``."""
    return results["molecules"][mol].get("budget_min", results.get("budget_min"))


def run_molsym(molecule: str, budget_s: float, quick: bool, out: Path) -> dict[str, Any]:
    overrides = ["experiment=rmd17", f"data.molecule={molecule}",
                 f"data_root={common.DATA}", "seed=0", *common.EXPERIMENT_OVERRIDES["rmd17"]]
    if quick:
        overrides += ["data.num_train=50", "data.num_val=10"]
    res = common.molsym_train(out / "molsym", overrides, budget_s, out / "molsym.log")
    res["n_test"] = 1000
    return res


def peer_data(molecule: str, quick: bool, out: Path) -> tuple[Path, Path, Path, int]:
    """molsym's train/val frames and the test frames as extxyz for the peers (REF_energy,
    REF_forces; eV, eV/Angstrom): (train_xyz, valid_xyz, test_xyz, number of test frames)."""
    from molsym.data.readers import read_file

    splits = json.loads((out / "molsym" / "splits.json").read_text())
    frames = read_file(npz(molecule, "train"))
    test = read_file(npz(molecule, "test"))
    if quick:
        test = test[:100]
    train_xyz = mace_peer.write_extxyz([frames[i] for i in splits["train"]], out / "train.xyz")
    valid_xyz = mace_peer.write_extxyz([frames[i] for i in splits["val"]], out / "valid.xyz")
    test_xyz = mace_peer.write_extxyz(test, out / "test.xyz")
    return train_xyz, valid_xyz, test_xyz, len(test)


def run_peer(peer, name: str, molecule: str, budget_s: float, quick: bool, out: Path,
             pred_suffix: str = ".npz") -> dict[str, Any]:
    """Train a peer (``mace_peer``, ``nequip_peer``, ``schnetpack_peer``: ``train`` and
    ``evaluate`` alike) on molsym's frames of ``molecule`` and test it on ``test_01``."""
    train_xyz, valid_xyz, test_xyz, n_test = peer_data(molecule, quick, out)
    res = peer.train(out / name, train_xyz, valid_xyz, budget_s)
    if res["model"]:
        res["metrics"] = peer.evaluate(Path(res["model"]), test_xyz,
                                       out / f"{name}_test_pred{pred_suffix}",
                                       out / f"{name}_eval.log")
    res["n_test"] = n_test
    return res


def keep_previous(new: dict[str, Any], old: dict[str, Any] | None,
                  old_budget_min: float | None) -> None:
    """Fill what a reused run cannot measure again (its wall time) from the stored entry of the
    same molecule and budget, and keep its peer entries that were not run this time."""
    if not old or old_budget_min != new.get("budget_min"):
        return
    for key, run in old.items():
        if not isinstance(run, dict):
            continue
        if key not in new:
            new[key] = run
        elif isinstance(new[key], dict):
            for k, v in run.items():
                if new[key].get(k) is None:
                    new[key][k] = v


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    mols = list(results["molecules"])
    fig, axes = plt.subplots(1, len(mols), figsize=(6.5 * len(mols), 3.6), squeeze=False)
    for ax, mol in zip(axes[0], mols, strict=False):
        r = results["molecules"][mol]
        names, vals, colors = [], [], []
        for key, label, color in (("molsym", "molsym (CPU budget)", "C0"),
                                  ("mace", "MACE (CPU budget)", "C1"),
                                  ("nequip", "NequIP (CPU budget)", "C2"),
                                  ("schnetpack", "SchNetPack PaiNN (CPU budget)", "C4")):
            mae = r.get(key, {}).get("metrics", {}).get("forces", {}).get("mae")
            if mae is not None:
                names.append(label)
                vals.append(mae)
                colors.append(color)
        for name, val in PUBLISHED.get(mol, {}).items():
            names.append(f"{name} (published, GPU)")
            vals.append(val)
            colors.append("0.6")
        ax.barh(names, vals, color=colors)
        ax.set_xscale("log")
        ax.set_xlim(1, 3 * max(vals))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("force MAE (meV/Å), test_01")
        ax.set_title(f"rMD17 {mol}: {budget_of(results, mol):g} min each on CPU", fontsize=10)
        for y, v in enumerate(vals):
            ax.text(v, y, f" {v:.3g}", va="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(results: dict[str, Any]) -> str:
    rows = []
    for mol, r in results["molecules"].items():
        for key, name in (("molsym", "molsym flagship (EquivariantModel, model=default)"),
                          ("mace", "MACE (32x0e+32x1o, L=1, 2 layers, correlation 3)"),
                          ("nequip", nequip_peer.DESCRIPTION),
                          ("schnetpack", schnetpack_peer.DESCRIPTION)):
            run = r.get(key)
            if not run:
                continue
            m = run.get("metrics") or {}
            base = common.RUNS / "accuracy" / mol
            load = common.run_load(base / "molsym")
            if key == "mace" and run.get("wall_s") and (base / "mace" / "mace.model").exists():
                end = (base / "mace" / "mace.model").stat().st_mtime
                load = common.mean_load(end - run["wall_s"], end)
            if key == "nequip":
                load = common.run_load(base / "nequip", "config.yaml", "logs/metrics.csv")
            if key == "schnetpack":
                load = common.run_load(base / "schnetpack", "config.json", "done.json")
            settings = {"molsym": common.run_settings(base / "molsym"),
                        "mace": "E:F 1:100, MACE's ReduceLROnPlateau",
                        "nequip": nequip_peer.SETTINGS,
                        "schnetpack": schnetpack_peer.SETTINGS}[key]
            rows.append([mol, name, budget_of(results, mol), m.get("energy", {}).get("mae"),
                         m.get("forces", {}).get("mae"), run.get("epochs") or
                         run.get("epochs_to_best"), run.get("n_test"), load, settings])
        for name, val in PUBLISHED.get(mol, {}).items():
            rows.append([mol, f"{name}, published (GPU, converged)", None, None, val, None,
                         1000, None, None])
    table = common.md_table(["molecule", "model", "CPU budget (min)", "energy MAE (meV)",
                             "force MAE (meV/Å)", "epochs", "test frames",
                             "mean load (2 cores)", "loss weights, scheduler"], rows)
    text = [
        "Train 950 / validate 50 frames of `train_01`, test on all of `test_01`; per molecule "
        "every model trained for the same wall-clock budget on the CPU (column CPU budget), "
        "one run after the other (not concurrently), float32, 1 thread each. The published "
        "numbers are converged GPU trainings quoted for scale, not run here.",
        "", table, "", *[note + "\n" for note in results.get("notes", [])],
        "![rMD17 force MAE](img/accuracy_rmd17.png)", "",
        "Commands: `" + "`; `".join(results.get("commands") or [results["command"]]) + "`. "
        + "Last invocation: " + common.env_line(results["env"]),
        "molsym command: `" + "`; `".join(
            r["molsym"]["command"] for r in results["molecules"].values() if "molsym" in r) + "`.",
        "MACE: `mace_run_train` on the same 950/50 frames (molsym's `splits.json`), energy/force "
        "weights 1/100, EMA 0.99, lr 0.01, batch 5, run under a timeout and finished with "
        "`--restart_latest --max_num_epochs 1` (best checkpoint); errors from "
        "`mace_eval_configs`. For MACE the epochs column counts epochs up to its best checkpoint.",
    ]
    if any("nequip" in r for r in results["molecules"].values()):
        m = nequip_peer.MODEL
        text.append(
            "NequIP: `nequip-train` (nequip's own Hydra config, written to the run folder as "
            "`config.yaml`) on the same 950/50 frames: `NequIPGNNModel` with l_max "
            f"{m['l_max']}, {m['num_features']} features, {m['num_layers']} layers, parity "
            f"{'on' if m['parity'] else 'off'}, cutoff {nequip_peer.CUTOFF:g} Å, radial MLP "
            f"{m['radial_mlp_depth']}x{m['radial_mlp_width']} (the published rMD17 NequIP "
            "has l_max 3, 64 features, 5 layers; scaled down to the CPU budget), float32; "
            "MSE loss of per-atom energy and forces 1:1 as in nequip's aspirin config, Adam lr "
            "0.01, batch 5, EMA 0.99, ReduceLROnPlateau (0.8, patience 10) on the validation "
            "energy+force MAE, which also picks the best checkpoint; budget = Lightning's "
            "`trainer.max_time`, which like molsym's counts only the fit. Errors from that "
            "checkpoint's EMA weights on the test frames. Command: `" + "`; `".join(
                r["nequip"]["command"] for r in results["molecules"].values()
                if "nequip" in r) + "`. Allegro was not trained here.")
    else:
        text.append("NequIP / Allegro were not trained here (no budget left on 2 shared cores).")
    if any("schnetpack" in r for r in results["molecules"].values()):
        m, t = schnetpack_peer.MODEL, schnetpack_peer.TRAINING
        text.append(
            "SchNetPack: SchNetPack's own `AtomisticTask` and a Lightning `Trainer` "
            "(`scripts/benchmarks/schnetpack_peer.py train`, settings in the run folder's "
            "`config.json`) on the same 950/50 frames, stored as SchNetPack's `ASEAtomsData` "
            f"database with a fixed split: PaiNN with {m['n_atom_basis']} features, "
            f"{m['n_interactions']} interactions, {m['n_rbf']} Gaussian radial functions, "
            f"cosine cutoff {schnetpack_peer.CUTOFF:g} Å, energy as an atomwise sum and forces "
            "by autograd (SchNetPack's rMD17 experiment has 128 features; halved for the CPU "
            "budget), float32; as in that experiment MSE loss of energy and forces weighted "
            f"{t['energy_weight']:g}:{t['forces_weight']:g}, Adam lr {t['lr']:g}, batch "
            f"{t['batch_size']}, EMA {t['ema_decay']:g}, mean energy per atom removed, "
            f"ReduceLROnPlateau ({t['lr_factor']:g}, patience {t['lr_patience']} epochs; "
            "SchNetPack's config has 75) on the validation loss, which also picks the best "
            "model; budget = Lightning's `max_time`, which counts only the fit. Errors from "
            "that model's EMA weights on the test frames. Command: `" + "`; `".join(
                r["schnetpack"]["command"] for r in results["molecules"].values()
                if "schnetpack" in r) + "`.")
    for mol in results["molecules"]:
        setup = mace_peer.setup_seconds(common.RUNS / "accuracy" / mol / "mace")
        if setup is not None:
            text.append(f"{mol}: MACE's budget includes {setup:.0f} s of its own setup (data, "
                        "statistics, model build); molsym's `trainer.max_time` counts only the "
                        "fit (its data loading and statistics come before it).")
    return "\n".join(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--molecules", nargs="+", default=["aspirin"])
    parser.add_argument("--budget-min", type=float, default=25.0)
    parser.add_argument("--no-mace", action="store_true")
    parser.add_argument("--no-nequip", action="store_true", help="do not train NequIP")
    parser.add_argument("--no-schnetpack", action="store_true",
                        help="do not train SchNetPack (PaiNN)")
    parser.add_argument("--quick", action="store_true", help="50 frames, 1 minute per model")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    name = "accuracy_quick" if args.quick else "accuracy"
    if args.report_only:
        results = common.load_result(name)
    else:
        budget_min = 1.0 if args.quick else args.budget_min
        results = common.load_result(name) or {"molecules": {}}
        command = "python -m scripts.benchmarks.accuracy " + " ".join(
            argv if argv is not None else sys.argv[1:])
        results.setdefault("commands", [results.pop("command")] if "command" in results
                           else []).append(command)
        results["env"] = common.environment(("mace", "nequip", "schnetpack"))
        for mol in args.molecules:
            out = common.RUNS / name / mol
            previous = results["molecules"].get(mol)
            previous_budget = budget_of(results, mol) if previous else None
            r: dict[str, Any] = {"molsym": run_molsym(mol, budget_min * 60, args.quick, out),
                                 "budget_min": budget_min}
            results["molecules"][mol] = r
            common.save_result(name, results)
            if not args.no_mace and mace_peer.available():
                r["mace"] = run_peer(mace_peer, "mace", mol, budget_min * 60, args.quick, out,
                                     ".xyz")
                common.save_result(name, results)
            if not args.no_nequip and nequip_peer.available():
                r["nequip"] = run_peer(nequip_peer, "nequip", mol, budget_min * 60, args.quick,
                                       out)
                r["nequip"]["setup_s"] = nequip_peer.setup_seconds(out / "nequip")
                common.save_result(name, results)
            if not args.no_schnetpack and schnetpack_peer.available():
                r["schnetpack"] = run_peer(schnetpack_peer, "schnetpack", mol, budget_min * 60,
                                           args.quick, out)
            keep_previous(r, previous, previous_budget)
            common.save_result(name, results)
    plot(results, common.img_path("accuracy_rmd17", args.quick))
    if not args.quick:
        common.write_section("Accuracy (rMD17)", report(results))
    print(json.dumps({m: {k: v.get("metrics", {}).get("forces") for k, v in r.items()
                          if isinstance(v, dict)} for m, r in results["molecules"].items()},
                     indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
