"""Dependency trees end to end: the probe reads them from real FastAPI on every supported
CPython, and blocking dependencies no endpoint names (an `Annotated` alias, a router-level
dependency, a nested one) are culprits of exactly the routes whose tree holds them, profiled
with `asgiprof attach` and real py-spy on real uvicorn under real load."""

from __future__ import annotations

import os
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from asgiprof.model import RouteDependency
from asgiprof.record.routes import read_route_table
from asgiprof.store import ROUTES
from tests.profiling import asgiprof, attach_under_load, culprit_at, summary
from tests.servers import ServerFactory, planted_lines
from tests.targets import TargetPythonError, target_python

LOAD_PATHS = ("/accounts/me", "/catalog/items", "/admin/stats", "/admin/users", "/health")
# planted line (in order) -> the dependency holding it and the routes whose tree holds that
EXPECTED = (
    ("load_session", {"GET /accounts/me", "GET /catalog/items"}),  # via an Annotated alias
    ("audit_admin", {"GET /admin/stats", "GET /admin/users"}),  # router-level
    ("check_quota", {"GET /catalog/items", "GET /admin/users"}),  # nested under Pager
)


@pytest.mark.integration
@pytest.mark.usefixtures("needs_ptrace")
@pytest.mark.timeout(120)
def test_dependencies_no_endpoint_names_are_culprits_of_exactly_their_routes(
    tmp_path: Path, server_factory: ServerFactory, examples_dir: Path
) -> None:
    # GIVEN the example whose blocking dependencies hide in an alias, a router and a class
    server = server_factory("dependency_tree", ready_path="/openapi.json")
    file = examples_dir / "dependency_tree.py"
    lines = planted_lines(file)
    assert len(lines) == len(EXPECTED)
    # WHEN it is profiled for 5 s under load on all its routes
    out = tmp_path / "out"
    p = attach_under_load(server, LOAD_PATHS, out, duration_s=5.0, timeout_s=60.0)
    assert p.load.failed == 0, [s.first_error for s in p.load.paths]
    data = p.data
    # THEN each planted line is a culprit in its dependency, with exactly its routes
    for line, (name, routes) in zip(lines, EXPECTED, strict=True):
        culprit = culprit_at(data, file, line)
        assert culprit is not None, (name, data["culprits"])
        assert (culprit["context"], culprit["context_name"]) == ("dependency", name)
        assert set(culprit["routes"]) == routes, culprit
        assert culprit["route"] in routes and culprit["blocked_ms"] > 300, culprit
    assert {c["line"] for c in data["culprits"] if c["file"] == str(file)} == set(lines)
    # ... the dependency summary names the same routes, and /health uses none of them
    deps = {d["name"]: d for d in data["dependencies"]["items"]}
    for name, routes in EXPECTED:
        assert set(deps[name]["routes"]) == routes and deps[name]["runs_on"] == "loop"
    assert all("GET /health" not in c["routes"] for c in data["culprits"])
    findings = {f["subject"] for f in data["findings"] if f["kind"] == "blocking-dependency"}
    assert findings == {name for name, _ in EXPECTED}

    # WHEN the same output directory is re-analysed as if written before trees were read
    doc = orjson.loads((out / ROUTES).read_bytes())
    for route in doc["routes"]:
        del route["dependencies"]
    (out / ROUTES).write_bytes(orjson.dumps(doc))
    done = asgiprof("report", str(out), cwd=tmp_path, timeout_s=60.0)
    assert done.returncode == 0, done.stdout + done.stderr
    # THEN the same culprits are found, but reading endpoints' source finds none of their routes
    old = summary(out)
    for line, (name, _) in zip(lines, EXPECTED, strict=True):
        culprit = culprit_at(old, file, line)
        assert culprit is not None and culprit["context_name"] == name, old["culprits"]
        assert culprit["routes"] == [], culprit


# --- the probe on every supported CPython and its FastAPI --------------------------------------

# Stays 3.9-compatible: the target venvs run CPython 3.9-3.13 with their newest FastAPI.
TREE_APP = """
    import time
    from typing import Annotated

    from fastapi import APIRouter, Depends, FastAPI


    async def get_tenant():
        return "acme"


    async def load_session(tenant: Annotated[str, Depends(get_tenant)]):
        time.sleep(0.001)
        return {"tenant": tenant}


    Session = Annotated[dict, Depends(load_session)]


    async def audit_admin():
        return None


    class Pager:
        def __init__(self, session: Session, page: int = 1):
            self.page = page


    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    admin = APIRouter(prefix="/admin", dependencies=[Depends(audit_admin)])


    @app.get("/me")
    async def me(session: Session):
        return session


    @admin.get("/users")
    async def users(pager: Annotated[Pager, Depends()]):
        return []


    app.include_router(admin)
"""


def _span(path: Path, first: str, last: str) -> tuple[str, int, int]:
    lines = path.read_text().splitlines()
    start = next(i for i, text in enumerate(lines) if first in text)
    end = next(i for i in range(start, len(lines)) if last in lines[i])
    # The probe's file names come from the child's cwd, which the OS reports resolved.
    return os.path.realpath(path), start + 1, end + 1


def _python(minor: str) -> str:
    if f"{sys.version_info.major}.{sys.version_info.minor}" == minor:
        return sys.executable
    try:
        python = target_python(minor)
    except TargetPythonError as exc:
        pytest.fail(f"could not create the CPython {minor} target venv: {exc}")
    if python is None:
        pytest.skip(f"no CPython {minor} under pyenv (pyenv install {minor})")
    return str(python)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("minor", ["3.9", "3.10", "3.11", "3.12", "3.13"])
def test_probe_reads_dependency_trees_on_every_supported_cpython(
    tmp_path: Path, minor: str
) -> None:
    # GIVEN an app with an alias, a router-level, a nested and a class dependency
    python = _python(minor)
    main = tmp_path / "main.py"
    main.write_text(textwrap.dedent(TREE_APP).lstrip("\n"))

    def dep(name: str, first: str, last: str, depth: int) -> RouteDependency:
        return RouteDependency(f"main.{name}", *_span(main, first, last), depth)

    session = dep("load_session", "async def load_session", "return {", 1)
    tenant = dep("get_tenant", "async def get_tenant", 'return "acme"', 2)
    # WHEN its table is read in that interpreter
    table = read_route_table("main:app", python=python, cwd=str(tmp_path), timeout_s=60.0)
    # THEN every route has its whole tree, depth first
    assert table.source == "app" and table.dependency_error is None, table
    trees = {r.name: r.dependencies for r in table.routes}
    assert trees == {
        "GET /me": (session, tenant),
        "GET /admin/users": (
            dep("audit_admin", "async def audit_admin", "return None", 1),
            dep("Pager.__init__", "def __init__", "self.page = page", 1),
            replace(session, depth=2),
            replace(tenant, depth=3),
        ),
    }
