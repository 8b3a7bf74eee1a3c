"""Mutation testing of the contract modules (``nox -s mutants``).

Runs mutmut (configured in ``[tool.mutmut]`` of pyproject.toml) on the functions in scope listed
in ``scripts/mutants.toml``, then prints each module's score: killed / (mutants - known
equivalent). A module under the floor (90 %) fails the run, and so does a stale equivalent entry.

    python scripts/mutants.py                 # every module, fresh
    python scripts/mutants.py -m identity     # one module (repeatable)
    python scripts/mutants.py --keep          # reuse mutants/ from the last run (only re-run
                                              # what mutmut's cache says changed)
    python scripts/mutants.py --report        # only print the scores of the last run

Needs Go (the ``*_go.py`` tests take their expectations from the Go code).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "scripts" / "mutants.toml"
MUTANTS = ROOT / "mutants"
LOG = MUTANTS.parent / ".mutmut.log"

KILLED = {1, 3, 24, -24, 36, 37, 152, 255, -11, -9}  # failed test, timeout, type check, crash
SURVIVED = {0}
NO_TESTS = {5, 33}


@dataclass
class Score:
    name: str
    mutants: int = 0
    killed: int = 0
    equivalent: int = 0
    survivors: list[str] = field(default_factory=list)
    untested: list[str] = field(default_factory=list)
    unchecked: int = 0

    @property
    def score(self) -> float:
        real = self.mutants - self.equivalent
        return self.killed / real if real else 1.0


def _module_name(file: str) -> str:
    return file.removesuffix(".py").replace("/", ".")


def _patterns(module: dict[str, object]) -> list[str]:
    prefix = _module_name(str(module["file"]))
    out = []
    for fn in module["functions"]:  # type: ignore[attr-defined]
        if fn == "*":
            out.append(f"{prefix}.*")
        elif fn.startswith("x\u01c1"):
            out.append(f"{prefix}.{fn}__mutmut_*")
        else:
            out.append(f"{prefix}.x_{fn}__mutmut_*")
    return out


def _exit_codes() -> dict[str, int | None]:
    codes: dict[str, int | None] = {}
    for meta in MUTANTS.rglob("*.py.meta"):
        codes.update(json.loads(meta.read_text())["exit_code_by_key"])
    return codes


def _show(mutant: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "mutmut", "show", mutant],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout


def _mutation(mutant: str) -> tuple[str, str]:
    """(function, the mutated line(s)) of a mutant: how equivalents are recognised."""
    function = mutant.rsplit(".", 1)[-1].split("__mutmut_", maxsplit=1)[0].removeprefix("x_")
    function = function.replace("x\u01c1", "", 1).replace("\u01c1", ".")
    diff = _show(mutant).splitlines()
    added = [ln[1:].strip() for ln in diff if ln.startswith("+") and not ln.startswith("+++")]
    return function, " | ".join(added)


def _run_mutmut(patterns: list[str], children: int) -> int:
    cmd = [sys.executable, "-m", "mutmut", "run", "--max-children", str(children), *patterns]
    print(f"$ mutmut run --max-children {children} <{len(patterns)} patterns>  (log: {LOG})")
    env = {**os.environ, "BUBU_MUTANTS": "1"}  # derandomized properties (tests/conftest.py)
    with LOG.open("w") as log:
        return subprocess.run(
            cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, check=False
        ).returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--module", action="append", help="only this module (repeatable)")
    parser.add_argument("--keep", action="store_true", help="reuse mutants/ from the last run")
    parser.add_argument("--report", action="store_true", help="only report the last run")
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()

    config = tomllib.loads(CONFIG.read_text())
    modules: dict[str, dict[str, object]] = config["modules"]
    floor = float(config["floor"])
    chosen = args.module or list(modules)
    unknown = [m for m in chosen if m not in modules]
    if unknown:
        parser.error(f"unknown module(s) {unknown}; known: {sorted(modules)}")

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    mutated = set(pyproject["tool"]["mutmut"]["only_mutate"])
    missing = [m for m in chosen if modules[m]["file"] not in mutated]
    if missing:
        print(f"[tool.mutmut] only_mutate lacks the file of {missing}", file=sys.stderr)
        return 2

    started = time.monotonic()
    if not args.report:
        if not args.keep and MUTANTS.exists():
            shutil.rmtree(MUTANTS)
        patterns = [p for m in chosen for p in _patterns(modules[m])]
        code = _run_mutmut(patterns, args.max_children)
        if code != 0:
            print(LOG.read_text()[-3000:], file=sys.stderr)
            print(f"mutmut run failed (exit {code})", file=sys.stderr)
            return code

    codes = _exit_codes()
    equivalents = {(e["function"], e["mutated"].strip()): e for e in config.get("equivalent", [])}
    used: set[tuple[str, str]] = set()
    scores: list[Score] = []
    for name in chosen:
        score = Score(name)
        pats = _patterns(modules[name])
        for mutant, code in sorted(codes.items()):
            if not any(fnmatch.fnmatchcase(mutant, p) for p in pats):
                continue
            score.mutants += 1
            if code in KILLED:
                score.killed += 1
                continue
            if code is None:
                score.unchecked += 1
                continue
            key = _mutation(mutant)
            if key in equivalents and equivalents[key]["module"] == name:
                used.add(key)
                score.equivalent += 1
            elif code in NO_TESTS:
                score.untested.append(f"{mutant}  [{key[1]}]")
            else:
                score.survivors.append(f"{mutant}  [{key[1]}]")
        scores.append(score)
    # An equivalent entry no surviving mutant matched has gone stale (the code moved on).
    stale = [
        f"{e['module']}.{e['function']}: {e['mutated']!r}"
        for key, e in equivalents.items()
        if key not in used and e["module"] in chosen and not any(s.unchecked for s in scores)
    ]

    width = max(len(s.name) for s in scores)
    print()
    print(f"{'module':<{width}}  mutants  killed  equiv  survived  no-test  score")
    failed = False
    for s in scores:
        ok = s.score >= floor and s.mutants > 0 and not s.unchecked
        failed |= not ok
        print(
            f"{s.name:<{width}}  {s.mutants:7d}  {s.killed:6d}  {s.equivalent:5d}  "
            f"{len(s.survivors):8d}  {len(s.untested):7d}  {s.score:6.1%}"
            + ("" if ok else f"  FAIL (floor {floor:.0%})")
            + (f"  ({s.unchecked} not checked)" if s.unchecked else "")
        )
    for s in scores:
        for mutant in s.survivors + s.untested:
            print(f"  survived: {mutant}")
    for line in stale:
        print(f"  stale equivalent (no surviving mutant matches it): {line}")
    if not args.report:
        print(f"\nmutation run took {time.monotonic() - started:.0f}s")
    return 1 if failed or stale else 0


if __name__ == "__main__":
    sys.exit(main())
