"""SMILES in, QM9 properties out: molsym against Chemprop 2 on the same molecules.

    python -m scripts.qm9_recipe data D --train 110000 --val 10000 --test 10831
    python -m scripts.qm9_recipe embed D --set test     # and --set trainval
    python -m scripts.benchmarks.smiles_properties prepare D OUT
    python -m scripts.benchmarks.smiles_properties chemprop OUT --budget-s 3000 --threads 1
    python -m scripts.benchmarks.smiles_properties evaluate D OUT \
        --model qm9=RUN_DFT/model.pt --model qm9-smiles=RUN_SMILES/model.pt

``prepare`` writes the SMILES and labels of molsym's QM9 split (the recipe's training,
validation and test molecules, in that order) as Chemprop CSVs: U0, HOMO, LUMO, gap in eV and
the dipole magnitude in Debye. ``chemprop`` trains Chemprop in its venv (peers/chemprop,
``chemprop_peer.py``) under a wall-clock budget and predicts the test molecules.
``evaluate`` predicts the same test molecules with each molsym model twice: on the QM9 DFT
geometries and on the RDKit ETKDG + MMFF geometries of their SMILES (cached by the recipe's
``embed``, made by the code ``molsym predict`` uses), and writes ``OUT/results.json``, a
Markdown table (all models on the molecules every method predicted) and
``OUT/error_vs_heavy_atoms.png``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
CHEMPROP_PY = ROOT / "peers" / "chemprop" / "bin" / "python"
#: molsym target (QM9 reader name) -> Chemprop column; energies eV, dipole Debye.
COLUMNS = {"energy": "u0_eV", "homo": "homo_eV", "lumo": "lumo_eV", "gap": "gap_eV",
           "dipole_moment": "dipole_D"}
REPORT = {"u0_eV": ("U0", "meV", 1000.0), "homo_eV": ("HOMO", "meV", 1000.0),
          "lumo_eV": ("LUMO", "meV", 1000.0), "gap_eV": ("gap", "meV", 1000.0),
          "dipole_D": ("dipole", "D", 1.0)}


def _labels(frames) -> pd.DataFrame:
    from molsym import units

    rows = []
    for m in frames:
        energy = m.calc.results["energy"] if m.calc is not None else m.info["energy"]
        rows.append({"smiles": m.info["smiles"], "name": m.info.get("name", ""),
                     "u0_eV": energy, "homo_eV": m.info["homo"], "lumo_eV": m.info["lumo"],
                     "gap_eV": m.info["gap"],
                     "dipole_D": m.info["dipole_moment"] / units.DEBYE})
    return pd.DataFrame(rows)


def _element_counts(frames, elements: list[int]) -> np.ndarray:
    return np.array([[int((m.numbers == z).sum()) for z in elements] for m in frames], float)


def prepare(data: Path, out: Path) -> dict:
    """Chemprop CSVs of molsym's split. U0 is given to Chemprop relative to per-element
    reference energies (least squares on the training molecules, what molsym's energy shift
    does), because Chemprop standardises its targets and absolute U0 spans -1,000 to
    -20,000 eV; ``evaluate`` adds the references back (``u0_reference.json``)."""
    import ase.io

    split = json.loads((data / "trainval_split.json").read_text())
    trainval = ase.io.read(data / "qm9_trainval.extxyz", index=":")
    test = ase.io.read(data / "qm9_test.extxyz", index=":")
    out.mkdir(parents=True, exist_ok=True)
    sets = {"train": [trainval[i] for i in split["train"]],
            "val": [trainval[i] for i in split["val"]], "test": test}
    elements = sorted({int(z) for frames in sets.values() for m in frames for z in m.numbers})
    train_u0 = _labels(sets["train"])["u0_eV"].to_numpy(float)
    refs, *_ = np.linalg.lstsq(_element_counts(sets["train"], elements), train_u0, rcond=None)
    reference = {"elements": elements, "energy_eV": refs.tolist()}
    (out / "u0_reference.json").write_text(json.dumps(reference))
    for name, frames in sets.items():
        df = _labels(frames)
        shifted = df.copy()
        shifted["u0_eV"] = df["u0_eV"] - _element_counts(frames, elements) @ refs
        shifted[["smiles", *REPORT]].to_csv(out / f"{name}.csv", index=False)
        if name == "test":
            df.to_csv(out / "test_labels.csv", index=False)
    return {k: len(v) for k, v in sets.items()}


def _chemprop_predictions(out: Path, test_frames) -> pd.DataFrame:
    """Chemprop's test predictions with U0's per-element references added back."""
    pred = pd.read_csv(out / "chemprop_test_predictions.csv")[list(REPORT)]
    reference = out / "u0_reference.json"
    if reference.is_file():
        ref = json.loads(reference.read_text())
        counts = _element_counts(test_frames, ref["elements"])
        pred["u0_eV"] = pred["u0_eV"] + counts @ np.asarray(ref["energy_eV"])
    return pred


def chemprop(out: Path, budget_s: float, threads: int, seed: int) -> dict:
    if not CHEMPROP_PY.is_file():
        raise SystemExit(f"no chemprop venv at {CHEMPROP_PY.parent.parent}: python -m venv "
                         "peers/chemprop && peers/chemprop/bin/pip install torch==2.13.0 "
                         "chemprop")
    env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PATH": "/usr/bin:/bin"}
    cmd = [str(CHEMPROP_PY), str(Path(__file__).with_name("chemprop_peer.py")), "train",
           str(out), "--budget-s", str(budget_s), "--threads", str(threads), "--seed",
           str(seed)]
    with open(out / "chemprop.log", "w") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, env=env)
    return json.loads((out / "chemprop_summary.json").read_text())


def _molsym_predictions(model: str, frames) -> pd.DataFrame:
    """Predictions of ``model`` on ``frames`` (None = not embedded) in the report columns."""
    from molsym.inference.predictor import Entry, Predictor, property_column

    predictor = Predictor(model)
    entries = [Entry.from_atoms(a) if a is not None else None for a in frames]
    ok = [e for e in entries if e is not None]
    table = predictor.table(predictor.run(ok))
    result = pd.DataFrame(np.nan, index=range(len(frames)), columns=list(REPORT))
    rows = [i for i, e in enumerate(entries) if e is not None]
    for target, col in COLUMNS.items():
        values = table[property_column(target, predictor.outputs)].to_numpy(float)
        result.loc[rows, col] = values
    return result


def _conformer_average(model: str, labels: pd.DataFrame, k: int, subset: int) -> dict:
    """MAE of the first conformer against the mean prediction over ``k`` conformers (RDKit
    ETKDG + MMFF, molsym's SMILES reader) on the first ``subset`` test molecules."""
    from molsym.data.readers import read_smiles

    smiles = labels["smiles"].tolist()[:subset]
    frames = read_smiles(smiles, num_conformers=k, on_error="skip", errors=[],
                         num_workers=1, source="conf")
    pred = _molsym_predictions(model, frames)
    pred["record"] = [int(a.info["record"]) for a in frames]
    first = pred.groupby("record").first()
    mean = pred.groupby("record").mean()
    counts = pred.groupby("record").size()
    full = counts[counts == k].index  # molecules with all k conformers
    ref = labels.loc[full, list(REPORT)].to_numpy(float)
    return {"conformers": k, "molecules": int(len(full)),
            "mae_first": {c: float(np.mean(np.abs(first.loc[full, c].to_numpy() - ref[:, j])))
                          for j, c in enumerate(REPORT)},
            "mae_mean": {c: float(np.mean(np.abs(mean.loc[full, c].to_numpy() - ref[:, j])))
                         for j, c in enumerate(REPORT)}}


def evaluate(data: Path, out: Path, models: dict[str, str], conformers: int = 1,
             conformer_subset: int = 1000) -> dict:
    import ase.io

    labels = pd.read_csv(out / "test_labels.csv")
    n = len(labels)
    dft = ase.io.read(data / "qm9_test.extxyz", index=":")
    embedded = json.loads((data / "qm9_test_smiles.json").read_text())
    smiles_frames: list = [None] * n
    for pos, atoms in zip(embedded["dft_position"],
                          ase.io.read(data / "qm9_test_smiles.extxyz", index=":"), strict=True):
        smiles_frames[pos] = atoms
    preds: dict[str, pd.DataFrame] = {}
    seconds: dict[str, float] = {}
    for name, path in models.items():
        for geometry, frames in (("DFT geometry", dft), ("SMILES", smiles_frames)):
            t0 = time.perf_counter()
            preds[f"molsym {name}, {geometry}"] = _molsym_predictions(path, frames)
            seconds[f"molsym {name}, {geometry}"] = time.perf_counter() - t0
    chem = out / "chemprop_test_predictions.csv"
    if chem.is_file():
        preds["Chemprop, SMILES"] = _chemprop_predictions(out, dft)
    common = np.ones(n, bool)
    for df in preds.values():
        common &= np.isfinite(df.to_numpy(float)).all(axis=1)
    heavy = np.array([int((a.numbers > 1).sum()) for a in dft])
    result = {"n_test": n, "n_common": int(common.sum()),
              "not_embedded": len(embedded["failed"]), "seconds": seconds, "mae": {},
              "mae_by_heavy_atoms": {}}
    for method, df in preds.items():
        err = np.abs(df.to_numpy(float) - labels[list(REPORT)].to_numpy(float))
        result["mae"][method] = {c: float(np.mean(err[common, k]))
                                 for k, c in enumerate(REPORT)}
        result["mae_by_heavy_atoms"][method] = {
            int(h): {c: float(np.mean(err[common & (heavy == h), k]))
                     for k, c in enumerate(REPORT)}
            for h in sorted(set(heavy[common]))}
    if conformers > 1:
        result["conformer_averaging"] = {
            name: _conformer_average(path, labels, conformers, conformer_subset)
            for name, path in models.items()}
    (out / "results.json").write_text(json.dumps(result, indent=1))
    _plot(result, out / "error_vs_heavy_atoms.png")
    return result


def _plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(REPORT), figsize=(4 * len(REPORT), 3.4))
    for ax, (col, (label, unit, scale)) in zip(axes, REPORT.items(), strict=True):
        for method, by_h in result["mae_by_heavy_atoms"].items():
            h = sorted(by_h)
            ax.plot(h, [by_h[k][col] * scale for k in h], marker="o", ms=3, label=method)
        ax.set_xlabel("heavy atoms")
        ax.set_title(f"{label} MAE ({unit})")
        ax.set_yscale("log")
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def markdown(result: dict) -> str:
    lines = [f"MAE on the {result['n_common']} of {result['n_test']} test molecules that every "
             f"method predicted ({result['not_embedded']} SMILES did not embed in RDKit)", "",
             "| method | " + " | ".join(f"{lab} ({unit})" for lab, unit, _ in REPORT.values())
             + " |", "|---|" + "---:|" * len(REPORT)]
    for method, mae in result["mae"].items():
        cells = [f"{mae[c] * REPORT[c][2]:.3g}" for c in REPORT]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="smiles_properties.py")
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("prepare")
    a.add_argument("data", type=Path)
    a.add_argument("out", type=Path)
    c = sub.add_parser("chemprop")
    c.add_argument("out", type=Path)
    c.add_argument("--budget-s", type=float, required=True)
    c.add_argument("--threads", type=int, default=1)
    c.add_argument("--seed", type=int, default=0)
    e = sub.add_parser("evaluate")
    e.add_argument("data", type=Path)
    e.add_argument("out", type=Path)
    e.add_argument("--model", action="append", default=[], metavar="NAME=PATH")
    e.add_argument("--conformers", type=int, default=1,
                   help="also compare the mean over this many conformers with one")
    e.add_argument("--conformer-subset", type=int, default=1000)
    args = p.parse_args(argv)
    if args.cmd == "prepare":
        print(json.dumps(prepare(args.data, args.out)))
    elif args.cmd == "chemprop":
        print(json.dumps(chemprop(args.out, args.budget_s, args.threads, args.seed)))
    else:
        models = dict(m.split("=", 1) for m in args.model)
        print(markdown(evaluate(args.data, args.out, models, args.conformers,
                                args.conformer_subset)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
