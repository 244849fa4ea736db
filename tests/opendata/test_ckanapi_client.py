"""The real CKAN client (ckanapi from PyPI) against a running CityPlus: Python API and command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from tests.conftest import need
from tests.opendata.factories import package
from tests.servers import free_port


@pytest.fixture
def server(ctx) -> Iterator[str]:  # type: ignore[no-untyped-def]
    from cityplus.api.app import create_app

    port = free_port()
    config = uvicorn.Config(create_app(ctx=ctx), host="127.0.0.1", port=port, log_level="warning", lifespan="on",
                            ws="none", http="h11", access_log=False)
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=15)


@pytest.fixture
def ckanapi():  # type: ignore[no-untyped-def]
    try:
        import ckanapi as module
    except ImportError as exc:
        need(False, f"ckanapi is not installed ({exc})")
        raise
    return module


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}  # its workers run `ckanapi`
    return subprocess.run([str(bindir / "ckanapi"), *args], capture_output=True, text=True, timeout=120, env=env)


def test_python_api(server, ckanapi, make_user, token_for, tmp_path) -> None:  # type: ignore[no-untyped-def]
    key = token_for(make_user("department_staff", org="hbj"))["Authorization"].removeprefix("Bearer ")
    with ckanapi.RemoteCKAN(server, apikey=key, user_agent="cityplus-test") as ckan:
        created = ckan.action.package_create(**package())
        assert created["name"] == "air-quality"
        csv_path = tmp_path / "aqi.csv"
        csv_path.write_bytes("站点,AQI\n金牛区,85\n锦江区,120\n".encode("gbk"))
        with csv_path.open("rb") as f:
            res = ckan.action.resource_create(package_id="air-quality", name="日报", upload=f)
        assert res["datastore_active"] is True
        rows = ckan.action.datastore_search(resource_id=res["id"], filters={"站点": "锦江区"})
        assert rows["records"][0]["AQI"] == 120
        found = ckan.action.package_search(q="空气质量", **{"facet.field": ["organization"]})
        assert found["count"] == 1 and found["facets"]["organization"] == {"hbj": 1}
        with pytest.raises(ckanapi.NotFound):
            ckan.action.package_show(id="no-such-dataset")
        with pytest.raises(ckanapi.ValidationError) as err:
            ckan.action.package_create(**package("air-quality"))
        assert "name" in err.value.error_dict
        with pytest.raises(ckanapi.SearchQueryError):
            ckan.action.package_search(fq="bogus:1")
    with ckanapi.RemoteCKAN(server) as anonymous, pytest.raises(ckanapi.NotAuthorized):
        anonymous.action.package_delete(id="air-quality")


def test_command_line(server, ckanapi, make_user, token_for, tmp_path) -> None:  # type: ignore[no-untyped-def]
    key = token_for(make_user("department_staff", org="hbj"))["Authorization"].removeprefix("Bearer ")
    with ckanapi.RemoteCKAN(server, apikey=key) as ckan:
        ckan.action.package_create(**package())
        ckan.action.package_create(**package("water", title="成都市地表水水质月报", tags=[{"name": "水质"}]))
    shown = _cli("action", "package_show", "id=air-quality", "-r", server)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["title"] == "成都市空气质量实时监测数据"
    found = _cli("search", "datasets", "q=水质", "-r", server)
    assert found.returncode == 0, found.stderr
    assert [json.loads(line)["name"] for line in found.stdout.splitlines()] == ["water"]
    dump = tmp_path / "datasets.jsonl"
    done = _cli("dump", "datasets", "--all", "-O", str(dump), "-r", server)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in dump.read_text("utf-8").splitlines()]
    assert sorted(p["name"] for p in lines) == ["air-quality", "water"]
    # edit offline, add a new one, load back: updates by id, creates the new one
    for p in lines:
        p["title"] = p["title"] + "（修订）"
    new: dict[str, Any] = package("noise", title="功能区噪声监测")
    dump.write_text("\n".join(json.dumps(p, ensure_ascii=False) for p in [*lines, new]) + "\n", "utf-8")
    log = tmp_path / "load.log"
    loaded = _cli("load", "datasets", "-I", str(dump), "-r", server, "-a", key, "-l", str(log))
    assert loaded.returncode == 0, loaded.stderr  # 3 would mean some record failed
    replies = [json.loads(line) for line in log.read_text("utf-8").splitlines() if line.strip()]
    assert sorted((r[2], r[3]) for r in replies) == [("create", None), ("update", None), ("update", None)], replies
    with ckanapi.RemoteCKAN(server) as ckan:
        assert ckan.action.package_show(id="water")["title"] == "成都市地表水水质月报（修订）"
        assert ckan.action.package_show(id="water")["version"] == "2"
        assert ckan.action.package_show(id="noise")["private"] is False
