"""pytest plugin: the real control plane and helpers around it.

Register in ``tests/conftest.py``::

    pytest_plugins = ["tests._controlplane.fixtures"]

Fixtures
--------
``controlplane`` (session)
    A started ``ControlPlane``: ``.url``, ``.admin_kubeconfig`` (= ``.kubeconfig_path``),
    ``.ca`` / ``.ca_path``, ``.client()`` / ``.async_client()`` (admin httpx clients,
    or ``token=...``), ``.write_kubeconfig(path, token=..., namespace=...)``, ``.crds``.
    Skips when Go is missing and no prebuilt binaries are configured.
``k8s_namespace`` (function)
    Name of a fresh, uniquely named namespace (deleted afterwards, best effort).
``engram_runner_identity`` / ``impulse_identity`` (function, start the ``operator``)
    ``rbac.Identity`` for a ServiceAccount the real operator made in ``k8s_namespace``, bound to
    the Role the operator generated (``workloads``): ``run-1-engram-runner`` for StoryRun
    ``run-1`` of Story ``story`` (one step ``step-a`` running Engram ``engram`` as a Job; its
    StepRun ``run-1-step-a`` exists and is Running) / ``hook-impulse-runner`` for Impulse
    ``hook`` targeting ``story``. ``.kubeconfig_path`` (TokenRequest token, context namespace =
    ``k8s_namespace``), ``.username``, ``.namespace``, ``.service_account``, ``.token``,
    ``.rules`` (read back from the operator's Role).
``make_identity`` (function)
    Factory ``make_identity(rules, name=None, namespace=None) -> Identity`` for rule sets that
    are not the operator's (e.g. a user's own ServiceAccount).
``fault_proxy`` (function)
    A started ``FaultProxy`` in front of the API server: ``.fail()``, ``.conflict()``,
    ``.throttle()``, ``.server_error()``, ``.delay()``, ``.disconnect()``, ``.requests``,
    ``.kubeconfig(token=None, namespace=None)``, ``.url``.
``admin_kubeconfig_env`` (function)
    Sets ``KUBECONFIG`` to the admin kubeconfig for the test and returns its path.
``operator`` (session)
    The real BubuStack operator (``operator.Operator``) running against ``controlplane`` with
    its webhooks registered. Tests that use it run after every test that does not (see
    ``pytest_collection_modifyitems``), so a test without it never meets its controllers or
    webhooks. A failing test that used it gets the operator's log lines written while it ran.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from . import build, rbac, workloads
from .build import GoNotFoundError
from .faults import FaultProxy, proxy_for
from .operator import Operator
from .s3 import S3Server
from .server import ControlPlane

GO_MISSING = "integration tests need Go (go not found on PATH) to build kube-apiserver"


def _progress(msg: str) -> None:
    # Session setup output is captured by pytest; a cold build takes minutes,
    # so say so on the real stderr.
    print(msg, file=sys.__stderr__, flush=True)


_prebuild: dict[str, Any] = {}

#: fixture name -> the Go artifacts a test using it needs (built before the first test runs)
PREBUILD_FIXTURES: dict[str, tuple[build.GoArtifact, ...]] = {
    "controlplane": (build.CONTROLPLANE,),
    "operator": (build.CONTROLPLANE, build.OPERATOR),
    "interop_bin": (build.INTEROP,),
    "s3_server": (build.S3,),
    "s3_server_factory": (build.S3,),
}


def _go_available(artifact: build.GoArtifact) -> bool:
    return shutil.which("go") is not None or bool(os.environ.get(artifact.override_var))


def prebuilt(artifact: build.GoArtifact) -> Any:
    """The binary directory built at collection, or raise the build error kept then."""
    if f"error:{artifact.name}" in _prebuild:
        raise _prebuild[f"error:{artifact.name}"]
    return _prebuild.get(f"dir:{artifact.name}")


@pytest.hookimpl(trylast=True)  # after -m/-k deselection: build only if still needed
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Build the binaries before any test runs, so a cold build (minutes) is not charged to
    the first test's pytest-timeout budget. Errors are kept and raised by the fixture."""
    _operator_tests_last(items)
    if config.option.collectonly:
        return
    needed: dict[str, build.GoArtifact] = {}
    for item in items:
        for fixture in getattr(item, "fixturenames", ()):
            for art in PREBUILD_FIXTURES.get(fixture, ()):
                needed[art.name] = art
    for art in needed.values():
        if not _go_available(art):
            continue
        try:
            _prebuild[f"dir:{art.name}"] = build.ensure(art, log=_progress)
        except GoNotFoundError:
            pass
        except Exception as exc:  # surfaced by the fixture, so only the tests using it fail
            _prebuild[f"error:{art.name}"] = exc


def _operator_tests_last(items: list[pytest.Item]) -> None:
    """Once started, the operator's controllers and webhooks act on every namespace for the
    rest of the session. Running the tests that use it last (stable order otherwise) keeps the
    others independent of whether, and when, it started."""
    without = [i for i in items if "operator" not in getattr(i, "fixturenames", ())]
    with_op = [i for i in items if "operator" in getattr(i, "fixturenames", ())]
    items[:] = without + with_op


_running: dict[str, Operator] = {}
_LOG_OFFSET = pytest.StashKey[int]()
_LOG_LINES = 300


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    op = _running.get("operator")
    item.stash[_LOG_OFFSET] = op.log_size() if op is not None else 0


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    op = _running.get("operator")
    if not report.failed or op is None or "operator" not in getattr(item, "fixturenames", ()):
        return
    lines = op.read_log(item.stash.get(_LOG_OFFSET, 0)).splitlines()
    # The operator serves every test's namespace at once: keep this test's lines and the
    # ones that name no namespace (webhook calls, cluster-scoped objects).
    namespace = getattr(item, "funcargs", {}).get("k8s_namespace")
    if namespace:
        lines = [line for line in lines if namespace in line or '"namespace"' not in line]
    cut = f"[{len(lines) - _LOG_LINES} earlier lines cut]\n" if len(lines) > _LOG_LINES else ""
    report.sections.append(
        (
            f"operator log since this test started ({op.log_path}"
            + (f", lines of namespace {namespace} and cluster-wide ones" if namespace else "")
            + ")",
            cut + "\n".join(lines[-_LOG_LINES:]),
        )
    )


@pytest.fixture(scope="session")
def controlplane() -> Iterator[ControlPlane]:
    if not _go_available(build.CONTROLPLANE):
        pytest.skip(GO_MISSING)
    cp = ControlPlane(bin_dir=prebuilt(build.CONTROLPLANE), log=_progress)
    try:
        cp.start()
    except GoNotFoundError:
        pytest.skip(GO_MISSING)
    try:
        yield cp
    finally:
        cp.stop()


def _slug(nodeid: str) -> str:
    name = nodeid.rsplit("::", 1)[-1].lower()
    return re.sub(r"[^a-z0-9]+", "-", name).strip("-")[:40].strip("-") or "t"


@pytest.fixture
def k8s_namespace(controlplane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"{_slug(request.node.nodeid)}-{secrets.token_hex(4)}"
    if not name[0].isalpha():
        name = "t-" + name
    with controlplane.client() as c:
        r = c.post(
            "/api/v1/namespaces",
            json={"metadata": {"name": name, "labels": {"bubu.test/namespace": "true"}}},
        )
        if r.status_code >= 300:
            raise RuntimeError(f"creating namespace {name}: HTTP {r.status_code}: {r.text[:500]}")
    try:
        yield name
    finally:
        # No kube-controller-manager: the namespace stays Terminating (which still
        # blocks new writes to it); its objects stay in etcd until the session ends.
        with controlplane.client() as c:
            c.delete(f"/api/v1/namespaces/{name}")


@pytest.fixture
def make_identity(controlplane: ControlPlane, k8s_namespace: str) -> Callable[..., rbac.Identity]:
    counter = iter(range(1_000_000))

    def make(
        rules: list[dict[str, Any]], name: str | None = None, namespace: str | None = None
    ) -> rbac.Identity:
        return rbac.create_identity(
            controlplane,
            namespace or k8s_namespace,
            name or f"test-identity-{next(counter)}",
            rules,
        )

    return make


@pytest.fixture
def engram_runner_identity(
    controlplane: ControlPlane, operator: Operator, k8s_namespace: str
) -> rbac.Identity:
    ns = k8s_namespace
    workloads.seed(
        controlplane, ns, workloads.engram(), workloads.story(), workloads.story_run("run-1")
    )
    ident = workloads.engram_runner(controlplane, ns, "run-1")
    # Running once its Job exists (the Job's pod never starts: the test is the pod)
    workloads.step_run(
        controlplane,
        ns,
        "run-1-step-a",
        lambda obj: (obj.get("status") or {}).get("phase") == "Running",
    )
    return ident


@pytest.fixture
def impulse_identity(
    controlplane: ControlPlane, operator: Operator, k8s_namespace: str
) -> rbac.Identity:
    ns = k8s_namespace
    workloads.seed(controlplane, ns, workloads.engram(), workloads.story(), workloads.impulse())
    return workloads.impulse_runner(controlplane, ns, "hook")


@pytest.fixture
def fault_proxy(controlplane: ControlPlane) -> Iterator[FaultProxy]:
    proxy = proxy_for(controlplane)
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture(scope="session")
def interop_bin() -> Any:
    """Directory of the Go peer programs built from ``tests/interop`` (the Go SDK's public API)."""
    if not _go_available(build.INTEROP):
        pytest.skip("Go interop tests need Go (go not found on PATH)")
    return prebuilt(build.INTEROP) or build.ensure(build.INTEROP, log=_progress)


def _s3_bin() -> Any:
    if not _go_available(build.S3):
        pytest.skip("S3 tests need Go (go not found on PATH) to build the SeaweedFS server")
    return prebuilt(build.S3) or build.ensure(build.S3, log=_progress)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A SeaweedFS S3 server on loopback for the whole session (admin and reader identities,
    one bucket). Do not kill it: use ``s3_server_factory`` for fault tests."""
    server = S3Server(_s3_bin())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_server_factory() -> Iterator[Callable[..., S3Server]]:
    """Start private SeaweedFS servers (``factory(create_bucket=True)``) that a test may kill."""
    bin_dir = _s3_bin()
    servers: list[S3Server] = []

    def factory(**kw: Any) -> S3Server:
        server = S3Server(bin_dir)
        servers.append(server)
        return server.start(**kw)

    try:
        yield factory
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def admin_kubeconfig_env(controlplane: ControlPlane, monkeypatch: pytest.MonkeyPatch) -> str:
    path = str(controlplane.admin_kubeconfig)
    monkeypatch.setenv("KUBECONFIG", path)
    return path


@pytest.fixture(scope="session")
def operator(controlplane: ControlPlane) -> Iterator[Operator]:
    """The real operator (bobrapet's manager) with webhooks, on the session's control plane."""
    if not _go_available(build.OPERATOR):
        pytest.skip("operator tests need Go (go not found on PATH) to build bobrapet's manager")
    op = Operator(controlplane, bin_dir=prebuilt(build.OPERATOR), log=_progress)
    op.start()
    _progress(f"bubu operator: ready in {op.startup_seconds:.1f}s; log: {op.log_path}")
    _running["operator"] = op
    try:
        yield op
    finally:
        _running.pop("operator", None)
        op.stop()
