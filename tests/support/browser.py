"""Drive Debian's headless Chromium through the DevTools protocol, with aiohttp (already a ComfyUI dependency).

No browser download and no driver package: Chromium comes from the distribution (`apt-get install chromium`),
and the protocol is a websocket of JSON messages. Enough for opening the ComfyUI page, running JavaScript in it
(`evaluate`, which awaits promises) and taking screenshots.

    with Browser() as browser:
        browser.open("http://127.0.0.1:8188")
        browser.evaluate("window.app !== undefined")
        browser.screenshot(Path("page.png"))

It also installs the newest ComfyUI web frontend the page tests run besides the host's pinned one (`make frontends`):

    python tests/support/browser.py install-frontend      # .venv/frontends/<NEWEST_FRONTEND>/comfyui_frontend_package/static
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The newest comfyui-frontend-package on PyPI, tested besides the host's pinned one (requirements-host.txt) by
# starting the server with --front-end-root at its static folder. Unpacked beside the venv's packages, never
# installed over the pinned one.
NEWEST_FRONTEND = "1.58.1"
FRONTENDS = REPO / ".venv" / "frontends"

CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", "chromium", "chromium-browser")
# frontend.md: without the networking flags the closed network causes trouble.
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
]


def find_chromium() -> str | None:
    """The Chromium executable: $CHROMIUM, else Debian's, else None."""
    for candidate in (os.environ.get("CHROMIUM"), *CHROMIUM_CANDIDATES):
        if candidate and (Path(candidate).is_file() or shutil.which(candidate)):
            return str(Path(candidate)) if Path(candidate).is_file() else shutil.which(candidate)
    return None


class JavaScriptError(RuntimeError):
    pass


class Browser:
    """One headless Chromium with one page; a context manager that stops it on exit."""

    def __init__(self, width: int = 1600, height: int = 1000, timeout: float = 60.0):
        executable = find_chromium()
        if executable is None:
            raise FileNotFoundError("no Chromium found: apt-get install chromium (or set CHROMIUM)")
        self.profile = Path(tempfile.mkdtemp(prefix="e4e-chromium-"))
        self.process = subprocess.Popen(
            [executable, *FLAGS, f"--window-size={width},{height}", "--remote-debugging-port=0",
             f"--user-data-dir={self.profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        )
        self.loop = asyncio.new_event_loop()
        self.timeout = timeout
        self.events: list[dict] = []  # exceptions and console messages, in order
        self._next_id = 0
        self._pending: dict[int, asyncio.Future] = {}
        try:
            self.loop.run_until_complete(self._connect(width, height))
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    async def _connect(self, width: int, height: int) -> None:
        import aiohttp

        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while not port_file.exists() or not port_file.read_text().strip():
            if self.process.poll() is not None:
                raise RuntimeError(f"Chromium exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError("Chromium did not open its DevTools port")
            await asyncio.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        self.session = aiohttp.ClientSession()
        async with self.session.get(f"http://127.0.0.1:{port}/json/list") as response:
            targets = await response.json(content_type=None)
        page = next(t for t in targets if t["type"] == "page")
        self.ws = await self.session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        self.reader = self.loop.create_task(self._read())
        for domain in ("Page.enable", "Runtime.enable"):
            await self._send(domain)
        await self._send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    async def _read(self) -> None:
        async for message in self.ws:
            data = json.loads(message.data)
            if "id" in data and data["id"] in self._pending:
                self._pending.pop(data["id"]).set_result(data)
            elif data.get("method") == "Runtime.exceptionThrown":
                details = data["params"]["exceptionDetails"]
                text = details.get("exception", {}).get("description") or details.get("text", "")
                self.events.append({"kind": "pageerror", "text": text})
            elif data.get("method") == "Runtime.consoleAPICalled":
                args = data["params"].get("args", [])
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in args)
                self.events.append({"kind": data["params"]["type"], "text": text})

    async def _send(self, method: str, **params) -> dict:
        self._next_id += 1
        future = self.loop.create_future()
        self._pending[self._next_id] = future
        await self.ws.send_str(json.dumps({"id": self._next_id, "method": method, "params": params}))
        data = await asyncio.wait_for(future, self.timeout)
        if "error" in data:
            raise RuntimeError(f"{method}: {data['error']}")
        return data["result"]

    def call(self, method: str, **params) -> dict:
        """One DevTools protocol command; returns its result."""
        return self.loop.run_until_complete(self._send(method, **params))

    def evaluate(self, expression: str):
        """Run JavaScript in the page (an async function body's value is awaited); returns its JSON value."""
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise JavaScriptError(details.get("exception", {}).get("description") or details.get("text"))
        return result["result"].get("value")

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def wait_for(self, expression: str, timeout: float = 60.0, poll: float = 0.25):
        """Evaluate `expression` until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.evaluate(expression)
            except JavaScriptError:
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"page: `{expression}` still false after {timeout:.0f} s")
            time.sleep(poll)

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            if getattr(self, "ws", None) is not None:
                self.loop.run_until_complete(self.ws.close())
            if getattr(self, "session", None) is not None:
                self.loop.run_until_complete(self.session.close())
            if getattr(self, "reader", None) is not None:
                self.reader.cancel()
        finally:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            self.loop.close()
            shutil.rmtree(self.profile, ignore_errors=True)


def frontend_root(version: str = NEWEST_FRONTEND) -> Path:
    """The static folder of an unpacked comfyui-frontend-package (what ComfyUI's --front-end-root takes)."""
    return FRONTENDS / version / "comfyui_frontend_package" / "static"


def install_frontend(version: str = NEWEST_FRONTEND) -> Path:
    """Download the comfyui-frontend-package wheel (no dependencies) and unpack it under .venv/frontends/<version>/."""
    import zipfile

    root = frontend_root(version)
    if (root / "index.html").is_file():
        return root
    target = FRONTENDS / version
    with tempfile.TemporaryDirectory(prefix="e4e-frontend-") as download:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", download,
                        f"comfyui-frontend-package=={version}"], check=True)
        (wheel,) = Path(download).glob("comfyui_frontend_package-*.whl")
        shutil.rmtree(target, ignore_errors=True)
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(target)
    if not (root / "index.html").is_file():
        raise RuntimeError(f"comfyui-frontend-package=={version} has no static/index.html")
    return root


if __name__ == "__main__":
    if sys.argv[1:2] != ["install-frontend"] or len(sys.argv) > 3:
        raise SystemExit("usage: python tests/support/browser.py install-frontend [VERSION]")
    print(install_frontend(*sys.argv[2:]))
