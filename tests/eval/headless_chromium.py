"""Open a page from disk in headless Chromium and report what a reader would see go wrong.

Chromium is driven through its DevTools protocol (a websocket, here aiohttp's client): the page is opened
with the console, the log and the network watched, so a script error, a console error, a resource that
fails to load or any request that leaves the disk is seen. Chromium's own stderr is a file (its dbus
and GPU chatter is not the page's doing, and an undrained pipe would stall it).
"""
from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from tests.helpers import liveness


@dataclass
class PageLoad:
    value: object                                          # what the expression evaluated to after "load"
    errors: list[str] = field(default_factory=list)        # exceptions, console errors, log errors, failed loads
    requests: list[str] = field(default_factory=list)      # every URL the page asked for


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        raise RuntimeError("chromium not found: install Debian's chromium package (apt-get install -y chromium; "
                           ".ci/run does)")
    return path


def _devtools_port(profile: Path, proc: subprocess.Popen, deadline: float) -> int:
    """Chromium writes the port it chose into the profile's DevToolsActivePort."""
    marker = profile / "DevToolsActivePort"
    while time.monotonic() < deadline:
        if marker.is_file() and (lines := marker.read_text().split()):
            return int(lines[0])
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited with status {proc.returncode} before it listened")
        time.sleep(0.1)
    raise TimeoutError("chromium did not open its DevTools port")


async def _load(port: int, url: str, expression: str, timeout: float) -> PageLoad:
    ids = itertools.count(1)
    result = PageLoad(None)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
            pages = [t for t in await response.json() if t["type"] == "page"]
        async with session.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            pending: dict[int, asyncio.Future] = {}
            loaded = asyncio.get_running_loop().create_future()

            async def call(method: str, **params):
                message_id = next(ids)
                pending[message_id] = asyncio.get_running_loop().create_future()
                await ws.send_json({"id": message_id, "method": method, "params": params})
                reply = await asyncio.wait_for(pending[message_id], timeout)
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

            async def listen():
                try:
                    await dispatch()
                except Exception as exc:  # a protocol surprise fails the waiting call, not a silent hang
                    for future in [*pending.values(), loaded]:
                        if not future.done():
                            future.set_exception(RuntimeError(f"DevTools listener stopped: {exc!r}"))
                    raise

            async def dispatch():
                async for message in ws:
                    event = json.loads(message.data)
                    method, params = event.get("method"), event.get("params", {})
                    if "id" in event:
                        pending.pop(event["id"]).set_result(event)
                    elif method == "Page.loadEventFired" and not loaded.done():
                        loaded.set_result(True)
                    elif method == "Runtime.exceptionThrown":
                        details = params["exceptionDetails"]
                        result.errors.append(f"exception: {details.get('exception', {}).get('description') or details.get('text')}")
                    elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                        result.errors.append(f"console.{params['type']}: {params['args']}")
                    elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                        result.errors.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}")
                    elif method == "Network.loadingFailed":
                        result.errors.append(f"load failed: {params.get('errorText')}")
                    elif method == "Network.requestWillBeSent":
                        result.requests.append(params["request"]["url"])

            listener = asyncio.create_task(listen())
            try:
                for domain in ("Page", "Runtime", "Log", "Network"):
                    await call(f"{domain}.enable")
                navigation = await call("Page.navigate", url=url)
                if navigation.get("errorText"):
                    raise RuntimeError(f"{url} did not open: {navigation['errorText']}")
                await asyncio.wait_for(loaded, timeout)
                reply = await call("Runtime.evaluate", expression=expression, returnByValue=True)
                if "exceptionDetails" in reply:
                    raise RuntimeError(f"{expression}: {reply['exceptionDetails']}")
                result.value = reply["result"].get("value")
            finally:
                listener.cancel()
    return result


def load_page(path: Path, expression: str, workdir: Path, timeout: float = liveness(60)) -> PageLoad:
    """Open `path` (a file:// URL) in a fresh headless Chromium, wait for its load event, evaluate
    `expression` (JavaScript) in it and return that with everything that went wrong meanwhile."""
    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-", dir=workdir))  # fresh: no old DevToolsActivePort
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    args = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
            "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank"]
    with open(profile / "chromium.log", "wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=log)
        try:
            port = _devtools_port(profile, proc, time.monotonic() + timeout)
            return asyncio.run(_load(port, path.resolve().as_uri(), expression, timeout))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=liveness(20))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
