"""Developer sessions: tests, lint, typecheck, docs, bench, protos."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True

PY = "3.11"


@nox.session(python=PY)
def tests(session: nox.Session) -> None:
    """Run the whole suite: unit, integration (real kube-apiserver, built with Go) and streaming."""
    session.install("-e", ".[dev]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python=PY)
def lint(session: nox.Session) -> None:
    """ruff lint and format check on the package, tests and tooling."""
    session.install("-e", ".[dev]")
    session.run(
        "ruff", "check", "bubu", "tests", "benchmarks", "examples", "noxfile.py", "hatch_build.py"
    )
    session.run("ruff", "format", "--check", "bubu")
    session.run("lint-imports")


@nox.session(python=PY)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on bubu/ (generated code excluded)."""
    session.install("-e", ".[dev]")
    session.run("mypy", "--strict", "bubu")


@nox.session(python=PY)
def docs(session: nox.Session) -> None:
    """Check the generated reference pages, then build the docs site with mkdocs --strict.

    ``nox -s docs -- serve`` serves the site on http://127.0.0.1:8000 instead of building it.
    """
    session.install("-e", ".[dev]")
    session.run("python", "scripts/gen_docs.py", "--check")
    env = {"NO_MKDOCS_2_WARNING": "1"}
    if session.posargs[:1] == ["serve"]:
        session.run("mkdocs", "serve", "--strict", env=env)
    else:
        session.run("mkdocs", "build", "--strict", "--site-dir", "build/site", env=env)


@nox.session(python=PY)
def protos(session: nox.Session) -> None:
    """Regenerate bubu/_gen from protos/ (pass --check to fail on a difference)."""
    session.install("-e", ".[dev]")
    session.run("python", "scripts/gen_protos.py", *session.posargs)


@nox.session(python=PY)
def bench(session: nox.Session) -> None:
    """Run the benchmarks in benchmarks/ and print their numbers."""
    session.install("-e", ".[dev,s3]")
    # only for benchmarks/bench_s3_clients.py (docs/decisions/0004-s3-client.md)
    session.install("aiobotocore")
    session.run("python", "benchmarks/run.py", *session.posargs)


@nox.session(python=PY)
def mutants(session: nox.Session) -> None:
    """Mutation testing of the contract modules; prints each module's score (floor 90 %).

    Not part of the default run (tens of minutes on two cores). Needs Go (the Go-pinned tests).
    Pass options through: ``nox -s mutants -- -m identity --keep`` (see scripts/mutants.py).
    """
    session.install("-e", ".[dev]", "mutmut==3.8.1")
    session.run("python", "scripts/mutants.py", *session.posargs)
