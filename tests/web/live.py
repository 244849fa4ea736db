"""A real CityPlus server for browser tests: demo city on SQLite, uvicorn in a background thread."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import uvicorn

from cityplus.core.audit import Actor
from cityplus.core.config import load_settings
from cityplus.core.context import AppContext
from tests.servers import free_port

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


def find_chromium() -> str | None:
    """Debian's Chromium (`.ci/run` installs the `chromium` package), or None when it is not installed."""
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None




def prepare_demo_database(ctx: AppContext) -> None:
    """Migrate the schema (create it from the models where a module has no migrations) and load the demo."""
    from cityplus.core import demo, migrate

    if any((migrate.CORE_DIR / "versions").glob("*.py")):
        migrate.upgrade(ctx.db, ctx.registry)
    else:  # early development: no migrations yet
        import importlib

        from cityplus.core.db import Base

        for name in ("cityplus.core.identity.models", "cityplus.core.audit", "cityplus.core.events",
                     *(m.models for m in ctx.registry if m.models)):
            importlib.import_module(name)
        Base.metadata.create_all(ctx.db.engine)
    demo.load(ctx, Actor.system("browser-test"))


class LiveServer:
    """The whole application served over HTTP on a free local port."""

    def __init__(self, workdir: Path) -> None:
        from cityplus.api.app import build_context, create_app

        settings = load_settings(database_url=f"sqlite:///{workdir / 'cityplus.db'}", var_dir=workdir,
                                 secret_key="browser-test", bus_url="", log_format="console")
        self.ctx = build_context(settings)
        prepare_demo_database(self.ctx)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(ctx=self.ctx), host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="on", ws="none", http="h11", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="cityplus-live-server", daemon=True)

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the CityPlus test server did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.ctx.db.dispose()
