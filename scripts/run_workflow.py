"""Run an API-format workflow through a real ComfyUI server (scripts/serve.py in a subprocess).

    python scripts/run_workflow.py WORKFLOW.json [--base NAME] [--port P] [--timeout S]

prints the paths of the images the workflow saved. As a library:

    with start_server("base") as server:
        prompt_id = queue_prompt(server.url, workflow)
        images = output_images(wait_for(server.url, prompt_id, timeout=600))

Only the standard library is used for HTTP.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from comfy_host import REPO, RUN_DIR, base_directory  # noqa: E402

log = logging.getLogger(__name__)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get_json(url: str, timeout: float = 10.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Server:
    """A ComfyUI server process started by start_server(); a context manager that stops it on exit."""

    def __init__(self, process: subprocess.Popen, url: str, base: Path, log_path: Path):
        self.process, self.url, self.base, self.log_path = process, url, base, log_path

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self, timeout: float = 15.0) -> None:
        """Terminate the server (kill it if it does not exit within `timeout` seconds)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        log.info("ComfyUI server at %s stopped (log: %s)", self.url, self.log_path)

    def log_tail(self, lines: int = 40) -> str:
        return _log_tail(self.log_path, lines)


def start_server(base_name: str = "base", port: int | None = None, extra_args=(), timeout: float = 120.0) -> Server:
    """Start `scripts/serve.py --port P --base NAME [extra_args]` and wait until GET /object_info answers.

    The server's output goes to .e4e/logs/server-NAME-P.log. Raises RuntimeError (with the log's tail) if the
    process exits first, TimeoutError if it does not answer within `timeout` seconds.
    """
    port = port or free_port()
    base = base_directory(base_name)
    log_path = RUN_DIR / "logs" / f"server-{base_name}-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, str(REPO / "scripts" / "serve.py"), "--port", str(port), "--base", base_name]
    command += list(extra_args)
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            command, cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    server = Server(process, f"http://127.0.0.1:{port}", base, log_path)
    start = time.monotonic()
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"ComfyUI server exited with {process.returncode}:\n{server.log_tail()}")
        try:
            _get_json(server.url + "/object_info", timeout=5.0)
            break
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
            if time.monotonic() - start > timeout:
                server.stop()
                raise TimeoutError(f"ComfyUI server not ready after {timeout:.0f} s:\n{server.log_tail()}") from None
            time.sleep(0.5)
    log.info("ComfyUI server ready at %s after %.1f s", server.url, time.monotonic() - start)
    return server


def _format_prompt_error(body: dict) -> str:
    error = body.get("error", {})
    text = [f"{error.get('message', 'invalid prompt')}: {error.get('details', '')}".rstrip(": ")]
    for node_id, node in (body.get("node_errors") or {}).items():
        for item in node.get("errors", []):
            text.append(f"  node {node_id} ({node.get('class_type')}): {item.get('message')}: {item.get('details')}")
    return "\n".join(text)


def queue_prompt(url: str, prompt: dict, client_id: str | None = None) -> str:
    """POST an API-format workflow to /prompt; returns its prompt_id. Raises RuntimeError with the server's
    validation errors if it rejects the prompt."""
    data = json.dumps({"prompt": prompt, "client_id": client_id or uuid.uuid4().hex}).encode()
    request = urllib.request.Request(url + "/prompt", data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as error:
        text = error.read().decode("utf-8", errors="replace")
        try:
            text = _format_prompt_error(json.loads(text))
        except (json.JSONDecodeError, AttributeError):
            pass
        raise RuntimeError(f"ComfyUI rejected the prompt (HTTP {error.code}): {text}") from None
    if body.get("node_errors"):
        raise RuntimeError(f"ComfyUI rejected the prompt: {_format_prompt_error(body)}")
    return body["prompt_id"]


def wait_for(url: str, prompt_id: str, timeout: float = 600.0, poll: float = 0.25) -> dict:
    """Poll GET /history/<prompt_id> until the prompt completed; returns its history entry.

    Raises RuntimeError with the server's execution error if it failed, TimeoutError after `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        entry = _get_json(f"{url}/history/{prompt_id}").get(prompt_id)
        status = (entry or {}).get("status", {})
        if status.get("status_str") == "error":
            errors = [data for event, data in status.get("messages", []) if event == "execution_error"]
            if errors:
                e = errors[0]
                raise RuntimeError(
                    f"ComfyUI failed in node {e.get('node_id')} ({e.get('node_type')}): "
                    f"{e.get('exception_type')}: {e.get('exception_message')}\n{''.join(e.get('traceback', []))}"
                )
            raise RuntimeError(f"ComfyUI failed: {status.get('messages')}")
        if status.get("completed"):
            return entry
        if time.monotonic() > deadline:
            raise TimeoutError(f"prompt {prompt_id} not finished after {timeout:.0f} s")
        time.sleep(poll)


def output_images(history: dict) -> list[tuple[str, str, str]]:
    """(filename, subfolder, type) of every image in a history entry's outputs, in node order."""
    return [
        (image["filename"], image.get("subfolder", ""), image.get("type", "output"))
        for node_output in history.get("outputs", {}).values()
        for image in node_output.get("images", [])
    ]


def image_path(base: Path, image: tuple[str, str, str]) -> Path:
    """Where an output_images() entry lies under a base directory (type is output, temp or input)."""
    filename, subfolder, kind = image
    return Path(base) / kind / subfolder / filename


def saved_pixels(base: Path, history: dict):
    """The one image a finished prompt saved (type output; previews go to temp), as a uint8 array [H, W, C]."""
    import numpy as np
    from PIL import Image

    saved = [image for image in output_images(history) if image[2] == "output"]
    assert len(saved) == 1, f"expected one saved image, got {saved}"
    return np.asarray(Image.open(image_path(base, saved[0])))


def run_workflow(
    workflow: dict, base_name: str = "base", port: int | None = None, timeout: float = 600.0
) -> list[Path]:
    """Start a server, run one API-format workflow, stop the server; returns the paths of its output images."""
    if "nodes" in workflow and "links" in workflow:
        raise ValueError("this is a UI-format workflow: export it with 'Export (API)'")
    with start_server(base_name, port) as server:
        prompt_id = queue_prompt(server.url, workflow)
        history = wait_for(server.url, prompt_id, timeout)
        return [image_path(server.base, image) for image in output_images(history)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workflow", type=Path, help="API-format workflow JSON")
    parser.add_argument("--base", default="base", help="base directory name under .e4e/")
    parser.add_argument("--port", type=int, default=None, help="default: a free port")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the workflow")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    start = time.perf_counter()
    paths = run_workflow(json.loads(args.workflow.read_text(encoding="utf-8")), args.base, args.port, args.timeout)
    for path in paths:
        print(path)
    print(f"done in {time.perf_counter() - start:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
