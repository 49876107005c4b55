"""Fine-tuning from cheap labels: does an xTB-pretrained aspirin model learn DFT from few frames
faster than a model trained from scratch? (issue 25, section 4)

1. GFN2-xTB labels (tblite, molsym's ``xtb`` oracle) of the geometries of rMD17 aspirin's
   ``train_01`` (frames 0-949).
2. Pretrain the flagship on those labels (``molsym train``, 900/50, ``--pretrain-min`` of fit).
3. For each N: DFT labels of the first N frames of ``train_01`` plus 10 validation frames
   (950-959), then ``molsym train init_from=<pretrained model>`` and the same run from scratch,
   both making ``--steps`` optimizer steps (cosine schedule over them), tested on all 1000
   frames of ``test_01`` (DFT).

    python -m scripts.benchmarks.finetune_xtb --sizes 25 50 100 --steps 1500
    python -m scripts.benchmarks.finetune_xtb --report-only
"""

from __future__ import annotations

import argparse
import concurrent.futures
import sys
import time
from pathlib import Path
from typing import Any

import ase.io

from scripts.benchmarks import common

RESULT = "finetune_xtb"
HEADING = "Fine-tuning from xTB labels (aspirin)"
VAL = range(950, 960)


def rmd17(split: str) -> list:
    from molsym.data.readers import read_file

    return read_file(common.DATA / "rmd17" / f"rmd17_aspirin_{split}_01.npz")


def xtb_labels(frames: list, out: Path) -> tuple[Path, float]:
    """labels.extxyz of ``frames`` (energy, forces by GFN2-xTB) and the seconds it took."""
    from molsym.oracles import XTBOracle, label

    structures = []
    for i, atoms in enumerate(frames):
        atoms = atoms.copy()
        atoms.calc = None
        atoms.info = {"id": f"train_01/{i}"}
        structures.append(atoms)
    start = time.perf_counter()
    report = label(structures, XTBOracle(), out, workers=2)
    return Path(report.labels_path), time.perf_counter() - start


def dft_subset(train: list, n: int, out: Path) -> Path:
    path = out / f"dft_{n}.extxyz"
    if not path.is_file():
        ase.io.write(path, [train[i] for i in range(n)] + [train[i] for i in VAL],
                     format="extxyz")
    return path


def run_pair(n: int, data: Path, test: Path, pretrained: Path, steps: int,
             runs: Path) -> dict[str, Any]:
    common_args = ["data=extxyz", f"data.path={data}", f"data.test_path={test}",
                   f"data.num_train={n}", f"data.num_val={len(VAL)}", "data.num_test=null",
                   "data.split_file=null", "seed=0", "module.loss.weights.forces=100",
                   f"trainer.max_steps={steps}", "trainer.max_epochs=100000",
                   "scheduler=cosine", f"scheduler.total_steps={steps}",
                   "callbacks.early_stopping.patience=100000"]
    out = {}
    for name, extra in (("finetuned", [f"init_from={pretrained}"]), ("scratch", [])):
        run_dir = runs / f"{name}_{n}"
        out[name] = common.molsym_train(run_dir, common_args + extra, None, run_dir / "train.log")
    return out


def report(results: dict[str, Any]) -> str:
    rows = []
    for n, pair in sorted(results["runs"].items(), key=lambda kv: int(kv[0])):
        f = {k: pair[k].get("metrics", {}).get("forces", {}).get("mae") for k in pair}
        e = {k: pair[k].get("metrics", {}).get("energy", {}).get("mae") for k in pair}
        ratio = (f["finetuned"] / f["scratch"]) if f["finetuned"] and f["scratch"] else None
        rows.append([n, f["scratch"], f["finetuned"], ratio, e["scratch"], e["finetuned"]])
    table = common.md_table(["N (DFT frames)", "scratch force MAE (meV/Å)",
                             "fine-tuned force MAE (meV/Å)", "fine-tuned / scratch",
                             "scratch energy MAE (meV)", "fine-tuned energy MAE (meV)"], rows)
    pre = results["pretrain"]
    return (f"{table}\n\nPretraining: {results['xtb_frames']} GFN2-xTB labels of the train_01 "
            f"geometries ({results['xtb_seconds']:.0f} s with 2 workers), then "
            f"`{pre['command']}` ({pre.get('epochs')} epochs). Each fine-tune and scratch run: "
            f"{results['steps']} optimizer steps, batch 5, cosine schedule, tested on the 1000 "
            f"frames of test_01. Command: `{results['command']}`. "
            f"{common.env_line(results['env'])}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[25, 50, 100])
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--pretrain-min", type=float, default=15.0)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args(argv)
    if args.report_only:
        common.write_section(HEADING, report(common.load_result(RESULT)))
        return 0
    runs = common.RUNS / RESULT
    runs.mkdir(parents=True, exist_ok=True)
    train = rmd17("train")
    labels, xtb_s = xtb_labels(train[:950], runs / "xtb")
    test = runs / "test_01.extxyz"
    if not test.is_file():
        ase.io.write(test, rmd17("test"), format="extxyz")
    pre_dir = runs / "pretrained"
    pretrain = common.molsym_train(
        pre_dir, ["data=extxyz", f"data.path={labels}", "data.num_train=900", "data.num_val=50",
                  "data.num_test=0", "seed=0", "module.loss.weights.forces=100",
                  "callbacks.early_stopping.patience=1000"],
        args.pretrain_min * 60, pre_dir / "train.log")
    results: dict[str, Any] = {"env": common.environment(), "steps": args.steps,
                               "xtb_frames": 950, "xtb_seconds": xtb_s, "pretrain": pretrain,
                               "command": "python -m scripts.benchmarks.finetune_xtb "
                                          + " ".join(sys.argv[1:] if argv is None else argv),
                               "runs": {}}
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {n: pool.submit(run_pair, n, dft_subset(train, n, runs), test,
                                  Path(pretrain["model"]), args.steps, runs)
                   for n in args.sizes}
        for n, future in futures.items():
            results["runs"][str(n)] = future.result()
    common.save_result(RESULT, results)
    common.write_section(HEADING, report(results))
    print(report(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
