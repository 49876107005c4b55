"""The docs run as written: every ```bash/```sh/```python block of README.md and docs/*.md.

A block either runs (the slow test runs each file's blocks in order, in one scratch folder,
so that later blocks use what earlier ones made) or is marked, on the line before its fence,
with why it cannot run here::

    <!-- docs-test: skip gpu: trains on a CUDA device -->

Reasons: see ``REASONS``. The fast test (default run) checks that every block is marked with
a known reason or is valid bash/Python; the slow one runs the unmarked blocks. Trainings run
short: with ``MOLSYM_DOCS_QUICK=1`` the ``molsym`` on the PATH appends ``QUICK_TRAIN`` to
every ``molsym train`` (1 epoch of 3 batches, no torch.compile).

    pytest tests/test_docs.py                 # fast check only: -m "not slow"
    pytest tests/test_docs.py -m slow         # run the blocks (minutes)
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LANGUAGES = {"bash": "bash", "sh": "bash", "shell": "bash", "python": "python", "py": "python"}
REASONS = {
    "gpu": "needs a CUDA device",
    "internet": "downloads (git clone, pip, a data set)",
    "cluster": "needs SLURM or several nodes",
    "docker": "needs a Docker or Apptainer engine",
    "peer-venvs": "needs the peers' venvs (MACE, NequIP, ...)",
    "external-data": "needs a data set that is not in the checkout",
    "long": "takes tens of minutes or more by design (a recipe, the whole test suite)",
    "fragment": "not a program: a signature or an excerpt",
}
MARK = re.compile(r"^<!--\s*docs-test:\s*skip\s+([\w-]+)\s*(?::\s*(.*?))?\s*-->$")
QUICK_TRAIN = ("trainer.max_epochs=1 ++trainer.limit_train_batches=3 "
               "++trainer.limit_val_batches=2 ++trainer.limit_test_batches=2 "
               "++trainer.max_time=null module.compile=false")


@dataclass
class Block:
    path: Path
    line: int            # 1-based line of the opening fence
    language: str        # "bash" or "python"
    code: str
    skip: str | None     # reason key, None when the block runs

    @property
    def name(self) -> str:
        path = self.path.relative_to(REPO) if self.path.is_relative_to(REPO) else self.path.name
        return f"{path}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """The bash/python blocks of a Markdown file with the skip mark before each."""
    lines = path.read_text().splitlines()
    out, k = [], 0
    while k < len(lines):
        fence = re.match(r"^```\s*([\w-]*)\s*$", lines[k])
        if not fence:
            k += 1
            continue
        end = next(j for j in range(k + 1, len(lines)) if lines[j].startswith("```"))
        language = LANGUAGES.get(fence.group(1).lower())
        if language is not None:
            before = next((lines[j].strip() for j in range(k - 1, -1, -1) if lines[j].strip()),
                          "")
            mark = MARK.match(before)
            skip = mark.group(1) if mark else ("?" if "docs-test" in before else None)
            out.append(Block(path, k + 1, language, "\n".join(lines[k + 1:end]) + "\n", skip))
        k = end + 1
    return out


ALL = [b for path in DOCS for b in blocks(path)]


@pytest.mark.parametrize("block", ALL, ids=[b.name for b in ALL])
def test_block_is_marked_with_a_reason_or_valid(block):
    if block.skip is not None:
        assert block.skip in REASONS, (
            f"{block.name}: unknown docs-test mark {block.skip!r}; use "
            f"<!-- docs-test: skip REASON: text --> with REASON one of {sorted(REASONS)}")
    if block.skip == "fragment":
        return
    if block.language == "bash":
        proc = subprocess.run(["bash", "-n"], input=block.code, text=True, capture_output=True)
        assert proc.returncode == 0, f"{block.name}: not valid bash: {proc.stderr}"
    else:
        compile(block.code, block.name, "exec")


def test_the_docs_have_runnable_blocks():
    runnable = {b.path.name for b in ALL if b.skip is None}
    assert {"README.md", "training.md", "export.md"} <= runnable


# --- running them ------------------------------------------------------------------------

DRIVER = r'''
import json, os, subprocess, sys, traceback
namespace = {"__name__": "__main__"}
for block in json.load(open(sys.argv[1])):
    print(f"=== {block['name']} ({block['language']})", flush=True)
    if block["language"] == "bash":
        rc = subprocess.run(["bash", "-euo", "pipefail", "-c", block["code"]]).returncode
        if rc:
            print(f"=== FAILED {block['name']}: exit status {rc}", flush=True)
            sys.exit(1)
        continue
    try:
        exec(compile(block["code"], block["name"], "exec"), namespace)
    except BaseException:
        traceback.print_exc()
        print(f"=== FAILED {block['name']}", flush=True)
        sys.exit(1)
'''

WRAPPER = """#!/usr/bin/env bash
# molsym, with the docs' trainings made short (tests/test_docs.py)
if [ "${1:-}" = train ] && [ -n "${MOLSYM_DOCS_QUICK:-}" ] && [[ " $* " != *" --help "* ]]; then
    set -- "$@" $MOLSYM_DOCS_QUICK_TRAIN
fi
exec "%s" -m molsym.cli.main "$@"
"""


def run_file(path: Path, workdir: Path, cache: Path, timeout: int = 1500) -> str:
    """Run the unmarked blocks of ``path`` in order in ``workdir``; the combined output.

    Raises AssertionError with the output when a block fails."""
    todo = [b for b in blocks(path) if b.skip is None]
    workdir.mkdir(parents=True, exist_ok=True)
    bin_dir = workdir / ".bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "molsym").write_text(WRAPPER % sys.executable)
    (bin_dir / "molsym").chmod(0o755)
    for name in ("data", "scripts"):  # paths the docs give relative to the checkout
        if not (workdir / name).exists():
            (workdir / name).symlink_to(REPO / name)
    spec = workdir / ".blocks.json"
    spec.write_text(json.dumps([{"name": b.name, "language": b.language, "code": b.code}
                                for b in todo]))
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
               PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", MOLSYM_CACHE_DIR=str(cache),
               MOLSYM_DOCS_QUICK="1", MOLSYM_DOCS_QUICK_TRAIN=QUICK_TRAIN, MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(spec)], cwd=workdir, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-6000:]
    return proc.stdout


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("docs_cache")


RUNNABLE = [p for p in DOCS if any(b.skip is None for b in blocks(p))]


@pytest.mark.slow
@pytest.mark.parametrize("path", RUNNABLE, ids=[p.name for p in RUNNABLE])
def test_doc_runs_as_written(path, tmp_path, cache):
    run_file(path, tmp_path / "work", cache)


def test_a_failing_unmarked_block_fails(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("text\n\n```bash\necho made > made.txt\n```\n\n"
                   "<!-- docs-test: skip gpu: needs CUDA -->\n```bash\nexit 3\n```\n\n"
                   "```python\nassert open('made.txt').read() == 'made\\n'\n```\n\n"
                   "```bash\nfalse\n```\n")
    assert [b.skip for b in blocks(doc)] == [None, "gpu", None, None]
    with pytest.raises(AssertionError, match=r"FAILED doc.md:16"):
        run_file(doc, tmp_path / "work", tmp_path / "cache")
