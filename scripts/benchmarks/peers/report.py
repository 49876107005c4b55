"""Tables, ratios and the docs section of ``scripts/benchmarks/bench_model.py`` (driver side
only)."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any


def _fmt(v: float | None, nd: int = 1) -> str:
    return "n/a" if v is None else f"{v:.{nd}f}"


def markdown_table(rows: list[dict[str, Any]], show_train_compiled: bool,
                   device: str = "cpu") -> str:
    """Markdown table of ``rows``; ``device`` ("cpu" or "cuda (<GPU name>)") names the device in
    the header, and on CUDA the memory columns are GPU memory (max_memory_allocated)."""
    cuda = device.startswith("cuda")
    head = [f"model ({device})", "params", "train conf/s", "infer eager conf/s",
            "infer compiled conf/s"]
    if show_train_compiled:
        head.append("train compiled conf/s")
    head = [h.replace("conf/s", "conf/s median (best)") for h in head]
    mem = ["peak GPU train (MiB)", "GPU idle (MiB)"] if cuda else [
        "peak RSS train (MiB)", "RSS idle (MiB)"]
    head += ["conf per CPU-s train / infer", *mem, "compile warm-up (s)"]
    peak, idle = ("peak_train_gpu_mb", "gpu_idle_mb") if cuda else ("peak_train_mb",
                                                                    "rss_idle_mb")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        modes = ["train", "infer", "infer_compiled"] + (
            ["train_compiled"] if show_train_compiled else [])
        cells = [r["label"], f"{r['params']:,}"]
        cells += [f"{_fmt(r[m])} ({_fmt(r['best_' + m])})" for m in modes]
        cells += [f"{_fmt(r['cpu_train'])} / {_fmt(r['cpu_infer'])}",
                  _fmt(r.get(peak), 0), _fmt(r.get(idle), 0),
                  _fmt(r["compile_warmup_s"], 0)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratio_lines(rat: dict[str, Any]) -> list[str]:
    out = []
    def how(mode: str | None) -> str:
        return "compiled vs compiled" if mode and mode.endswith("_compiled") else "eager vs eager"

    for peer in ("mace", "nequip"):
        f = lambda k: _fmt(rat.get(k), 2)  # noqa: E731
        out.append(f"- molsym flagship / {peer} (medians): train x{f(peer + '_train')} "
                   f"({how(rat.get(peer + '_train_mode'))}), infer x{f(peer + '_infer')} "
                   f"({how(rat.get(peer + '_infer_mode'))}); from the fastest steps: "
                   f"train x{f('best_' + peer + '_train')}, infer x{f('best_' + peer + '_infer')}"
                   f"; per CPU-second: train x{f('cpu_' + peer + '_train')}, "
                   f"infer x{f('cpu_' + peer + '_infer')}")
    return out


def last_line(rat: dict[str, Any]) -> str:
    f = lambda v: "nan" if v is None else f"{v:.2f}"  # noqa: E731
    return (f"speedup_vs_mace_train={f(rat['mace_train'])} "
            f"speedup_vs_mace_infer={f(rat['mace_infer'])} "
            f"speedup_vs_nequip_train={f(rat['nequip_train'])} "
            f"speedup_vs_nequip_infer={f(rat['nequip_infer'])}")


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo ("unknown" where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def machine() -> dict[str, Any]:
    return {"nproc": os.cpu_count(), "cpu": cpu_name(), "python": platform.python_version()}


def docs_section(rows, rat, workers, info, args, argv, load, device: str = "cpu") -> str:
    vers: dict[str, str] = {}
    for w in workers.values():
        for k, v in w.ready["versions"].items():
            vers.setdefault(k, v)
    m = machine()
    cmd = "python -m scripts.benchmarks.bench_model " + " ".join(argv)
    cuda = device.startswith("cuda")
    where = (f"on {device}, {m['nproc']} host CPU cores, torch threads left at torch's default"
             if cuda else f"on {m['nproc']} CPU cores ({m['cpu']}), torch threads = "
             f"{args.threads}")
    return "\n".join([
        "## Model speed",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} with `{cmd.strip()}`",
        f"{where}, float32, "
        f"batch {args.batch_size}, rMD17 aspirin (first {info['n_conf']} frames of "
        f"`rmd17_aspirin_train_01.npz`, {info['n_atoms']} atoms, cutoff {args.cutoff} Angstrom, "
        f"{info['edges_per_conf']:.0f} directed edges per frame). Versions: "
        + ", ".join(f"{k} {v}" for k, v in sorted(vers.items())) + ".",
        "",
        markdown_table(rows, args.train_compiled, device),
        "",
        *ratio_lines(rat),
        "",
        "How it is measured:",
        f"- Models: {args.num_channels} channels, l_max {args.l_max}, {args.num_layers} layers "
        "each (molsym invariant has no l_max); mace-torch MACE with residual interactions, "
        "correlation 3, radial MLP [64,64,64]; nequip NequIPGNNModel with parity off.",
        "- Neighbour lists (molsym's vesin list, identical edges for every model) and batching "
        "are done once before timing, for every model alike; only model steps are timed.",
        "- On the CPU every worker flushes float32 denormals to zero "
        "(`torch.set_flush_denormal(True)`, as `molsym train` does): without it molsym's "
        "force-training steps with 2 threads ran ~50x slower (denormals in the double backward).",
        "- Train = forward energy + forces (autograd, graph kept), MSE loss on energy and forces, "
        "backward, Adam step. Infer = energy + forces. Each block: "
        f"{args.warmup} untimed warm-up steps, then at least {args.min_time:g} s.",
        "- Compiled: molsym `molsym.models.compiled.compile_model` (`torch.compile`, "
        "dynamic=True, generated CPU kernels single-threaded: a torch 2.13 Inductor bug gave "
        "wrong forces with 2 threads; the matrix products still use both threads), the path "
        "of `molsym train module.compile=true`, `predict --compile` and the calculator; "
        "nequip its own train-time compile (`compile_mode='compile'`: make_fx + "
        "torch.compile, dynamic=True). Both are timed for inference and for training (the "
        "compiled graph holds the forces; the loss backward runs its compiled backward), "
        "compiled once and run over every batch once before timing. Ratios compare compiled "
        "with compiled where both models have a compiled path, eager with eager otherwise. "
        "nequip's AOTInductor packaging needs a checkpoint and was not used; mace-torch not "
        "compiled (its compile path is for GPU training), so the mace ratios are eager vs "
        "eager.",
        ("- Peak memory: torch.cuda.max_memory_allocated of each model's own worker over its "
         "first training block; GPU idle = allocated after model and batches, before any step. "
         "Every timed step is bracketed by torch.cuda.synchronize."
         if cuda else
         "- Peak memory: getrusage maxrss of each model's own worker process after its first "
         "training block (includes the Python interpreter and torch); RSS idle = after imports, "
         "data and model, before any step."),
        ("- `--quick`: 1 round of 1 s blocks on 25 frames; molsym invariant not compiled.\n"
         if args.quick else "")
        + "- Every model runs in its own long-lived process (peers in their own venvs); "
        f"{args.rounds} round(s), models interleaved round-robin, median reported. Load "
        f"average {load[0]:.1f} at start, {load[1]:.1f} at the end (a 2-thread worker alone "
        "makes 2); identical blocks still vary by 20% or more between rounds on this virtual "
        "machine, so read the ratios (the per-CPU-second ones are the least load-dependent) "
        "rather than single rates. "
        + (f"Each worker ran its timed blocks (only those) at nice {args.nice}, ahead of the "
           "other jobs." if args.nice else "All at normal priority."),
        "- conf/s median (best): each block's rate is taken from its median step, the table "
        "shows the median over rounds; best = the fastest single step seen (least disturbed). "
        "conf per CPU-s: configurations per CPU-second of the worker (all its threads).",
        "",
    ])


def write_docs(path: Path, section: str) -> None:
    """Replace (or add) the ``## Model speed`` section of ``path``; other sections are kept."""
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.strip() == "## Model speed"), None)
    if start is None:
        new = text.rstrip("\n") + "\n\n" + section
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
                   len(lines))
        new = "\n".join(lines[:start] + section.rstrip("\n").splitlines() + [""]
                        + lines[end:]).rstrip("\n") + "\n"
    path.write_text(new if new.endswith("\n") else new + "\n")
