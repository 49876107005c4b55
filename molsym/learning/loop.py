"""The active-learning loop of ``molsym learn`` (see docs/active_learning.md).

Round 0 labels the start set (:mod:`.start`) and trains the first committee. Each round
``k >= 1`` explores with the last committee (:mod:`.explore`), stops when its disagreement
stayed under the threshold for the whole round, else selects (:mod:`.select`), labels
(:mod:`.labelling`) and retrains (:mod:`.retrain`). Every step leaves its result in
``rounds/<k>/`` before the next starts, so the same command resumes a killed run at the step
where it stopped; labels go to ``labels.extxyz`` through :func:`molsym.oracles.label`, which
never repeats a finished one.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from omegaconf import DictConfig

from molsym.atomic import atomic_path, write_text_atomic
from molsym.errors import ConfigError
from molsym.learning.explore import Exploration, explore
from molsym.learning.frames import read_frames, write_frames
from molsym.learning.labelling import count_labels, label_round, labels_of, read_labels
from molsym.learning.progress import Progress
from molsym.learning.retrain import retrain
from molsym.learning.select import is_candidate, select
from molsym.learning.settings import MIN_LABELS, LoopSettings
from molsym.learning.start import smiles_list, start_structures
from molsym.learning.threshold import reference_frames, round_threshold, spreads_and_errors
from molsym.learning.validate import fresh_errors
from molsym.oracles import OracleError, check_elements

ROUND = "round.json"
EXPLORE = "explore.json"


class Loop:
    """One ``molsym learn`` run in ``run_dir`` (a new one, or one to resume)."""

    def __init__(self, cfg: DictConfig, run_dir: str | Path, progress: Progress | None = None):
        from molsym.training.ensemble_run import ensemble_size
        from molsym.training.run import build

        self.cfg = cfg
        self.run_dir = Path(run_dir).resolve()
        self.settings: LoopSettings = build(cfg.learn, "learn")
        if ensemble_size(cfg) < 2:
            raise ConfigError(f"ensemble.size={ensemble_size(cfg)}: molsym learn needs a "
                              "committee of at least 2 members (their disagreement drives it)")
        self.oracle = build(cfg.oracle, "oracle")
        self.progress = progress or Progress(self.settings.max_labels)
        self.started = time.monotonic()
        self.rounds: list[dict] = []

    # --- budgets -------------------------------------------------------------------------
    def labels(self) -> int:
        return count_labels(self.run_dir)

    def out_of_time(self) -> bool:
        hours = self.settings.max_hours
        return hours is not None and time.monotonic() - self.started > hours * 3600.0

    def say(self, what: str, round_: int | None = None) -> None:
        self.progress.update(round_, self.labels())
        self.progress.say(what)

    # --- steps ---------------------------------------------------------------------------
    def _label(self, structures, round_: int) -> dict:
        name = self.oracle.name
        self.say(f"oracle {name}: labelling {len(structures)} structures "
                 f"({self.settings.oracle_workers} worker(s))", round_)
        report = label_round(structures, self.oracle, self.run_dir,
                             self.settings.oracle_workers, self.settings.oracle_timeout_s)
        self.say(f"oracle {name}: {report.labelled} new, {report.failed} failed, "
                 f"{report.skipped} done before, {report.seconds:.1f} s", round_)
        return {"labelled": report.labelled, "failed": report.failed,
                "skipped": report.skipped, "oracle_seconds": round(report.seconds, 3)}

    def _train(self, round_: int, previous: Path | None) -> tuple[Path, float]:
        out = self.run_dir / "rounds" / str(round_) / "train"
        size = self.cfg.ensemble.size
        self.say(f"training the committee ({size} members) on {self.labels()} labels"
                 + (" (warm start)" if previous is not None else ""), round_)
        t0 = time.perf_counter()
        model = retrain(self.cfg, self.run_dir / "labels.extxyz", out,
                        None if previous is None else previous / "model.pt")
        return model, time.perf_counter() - t0

    def start_round(self) -> Path:
        """Round 0: start set, its labels, the first committee."""
        folder = self.run_dir / "rounds" / "0"
        record = _read_json(folder / ROUND)
        if record and (folder / "train" / "model.pt").is_file():
            self.rounds.append(record)
            return folder / "train"
        start_file = folder / "start.extxyz"
        if start_file.is_file():
            starts = read_frames(start_file)
        else:
            s = self.settings
            smiles = smiles_list(self.cfg.smiles)
            self.say(f"embedding {len(smiles)} SMILES: {s.num_conformers} conformers, "
                     f"{s.rattled_copies} rattled copies each", 0)
            structures = start_structures(smiles, s.num_conformers, s.rattled_copies,
                                          s.rattle_stdev, s.seed)
            check_elements(self.oracle, structures)
            starts = write_frames(start_file, structures[: s.max_labels])
        labelled = self._label(starts, 0)
        total = self.labels()
        if total < MIN_LABELS:
            raise OracleError(f"oracle {self.oracle.name} labelled only {total} of the "
                              f"{len(starts)} start structures; the committee needs at least "
                              f"{MIN_LABELS} (reasons in {self.run_dir / 'failures.jsonl'})")
        model, seconds = self._train(0, None)
        record = {"round": 0, "labels_total": self.labels(), "selected": len(starts),
                  **labelled, "train_seconds": round(seconds, 3),
                  "test_metrics": _read_json(model.parent / "metrics.json")}
        write_text_atomic(folder / ROUND, json.dumps(record, indent=1))
        self.rounds.append(record)
        return model.parent

    def _explore(self, k: int, previous: Path) -> dict:
        folder = self.run_dir / "rounds" / str(k)
        summary = _read_json(folder / EXPLORE)
        if summary and (folder / "candidates.extxyz").is_file():
            return summary
        from molsym.inference.calculator import MolsymCalculator

        s = self.settings
        starts = read_labels(self.run_dir)
        spreads = errors = None
        if s.threshold_mode == "calibrated":
            self.say("calibrating the threshold: the committee's spread and error on its "
                     "labelled frames", k)
            spreads, errors = spreads_and_errors(previous / "model.pt", reference_frames(starts))
        threshold, ratio = round_threshold(s, spreads, errors)
        calc = MolsymCalculator(str(previous / "model.pt"), dtype="float64")

        def on_trajectory(t: int, n: int) -> None:
            self.say(f"MD with the committee: trajectory {t + 1}/{n}, {s.md_steps} steps at "
                     f"{s.temperature:g} K", k)

        found: Exploration = explore(calc, starts, s, seed=s.seed * 1000 + k,
                                     on_trajectory=on_trajectory)
        candidates = [f for f in found.frames if is_candidate(f, threshold)]
        write_frames(folder / "candidates.extxyz", candidates)
        summary = {**found.summary(threshold), "threshold": threshold,
                   "threshold_mode": s.threshold_mode, "error_to_spread": ratio,
                   "spreads": found.spreads}
        write_text_atomic(folder / EXPLORE, json.dumps(summary))
        return summary

    def _finished(self, k: int) -> bool:
        """Whether round ``k`` is on disk complete (a resumed run replays it: its committee
        is the one the next round and the final ``model.pt`` start from)."""
        folder = self.run_dir / "rounds" / str(k)
        record = _read_json(folder / ROUND)
        return bool(record) and bool(record.get("stop")
                                     or (folder / "train" / "model.pt").is_file())

    def learning_round(self, k: int, previous: Path) -> tuple[Path | None, str | None]:
        """Round ``k``: ``(its committee's folder or None, stop reason or None)``."""
        s = self.settings
        folder = self.run_dir / "rounds" / str(k)
        record = _read_json(folder / ROUND)
        if self._finished(k):
            self.rounds.append(record)
            return (None if record.get("stop") else folder / "train"), record.get("stop")
        summary = self._explore(k, previous)
        threshold = summary["threshold"]
        record = {"round": k, "exploration": {x: v for x, v in summary.items()
                                              if x != "spreads"}}
        self.say(f"MD: {summary['above_threshold']} of {summary['sampled_frames']} frames "
                 f"above {threshold:.3g} eV/A, largest spread {summary['spread_max']:.3g}, "
                 f"{len(summary['explosions'])} explosion(s)", k)
        if summary["above_threshold"] == 0 and not summary["explosions"]:
            return self._finish_round(folder, record, "converged: the committee's force "
                                      f"spread stayed under {threshold:.3g} eV/Angstrom for "
                                      "the whole round")
        selected_file = folder / "selected.extxyz"
        if selected_file.is_file():
            selected = read_frames(selected_file)
        else:
            budget = max(0, s.max_labels - self.labels())
            selected = select(read_frames(folder / "candidates.extxyz"), threshold,
                              min(s.labels_per_round, budget), s.min_frame_distance,
                              read_labels(self.run_dir))
            selected = write_frames(selected_file, selected)
        if not selected:
            return self._finish_round(folder, record, "no frame above the threshold is new "
                                      "enough to label (learn.min_frame_distance)")
        record.update(self._label(selected, k))
        new = labels_of(selected, read_labels(self.run_dir))
        record["fresh_errors"] = fresh_errors(previous / "model.pt", new)
        if self.out_of_time():  # not recorded: a rerun with more time trains this round
            return None, "time budget spent"
        model, seconds = self._train(k, previous)
        record.update({"selected": len(selected), "labels_total": self.labels(),
                       "train_seconds": round(seconds, 3),
                       "test_metrics": _read_json(model.parent / "metrics.json")})
        write_text_atomic(folder / ROUND, json.dumps(record, indent=1))
        self.rounds.append(record)
        return model.parent, None

    def _finish_round(self, folder: Path, record: dict, reason: str):
        record.update({"stop": reason, "labels_total": self.labels()})
        write_text_atomic(folder / ROUND, json.dumps(record, indent=1))
        self.rounds.append(record)
        return None, reason

    # --- the whole run -------------------------------------------------------------------
    def run(self) -> dict:
        """Run (or resume) the loop; returns ``{"model", "report", "stop", "labels"}``."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        last = self.start_round()
        stop = None
        for k in range(1, self.settings.max_rounds + 1):
            if not self._finished(k):  # a finished round is replayed whatever the budget
                if self.labels() >= self.settings.max_labels:
                    stop = f"label budget spent ({self.labels()} of {self.settings.max_labels})"
                elif self.out_of_time():
                    stop = "time budget spent"
            if stop:
                break
            trained, stop = self.learning_round(k, last)
            last = trained or last
            if stop:
                break
        else:
            stop = f"{self.settings.max_rounds} rounds done (learn.max_rounds)"
        model = self.run_dir / "model.pt"
        with atomic_path(model) as tmp:
            shutil.copyfile(last / "model.pt", tmp)
        from molsym.learning.report import write_report

        report = write_report(self.run_dir, self.rounds, stop, self.settings,
                              self.oracle.name)
        self.say(f"done: {stop}; model {model}, report {report}")
        return {"model": str(model), "report": str(report), "stop": stop,
                "labels": self.labels(), "rounds": len(self.rounds) - 1}


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}
