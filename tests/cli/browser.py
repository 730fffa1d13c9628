"""A headless chromium driven through the Chrome DevTools protocol (websocket-client):
what the browser test and the docs' screenshot use.

Debian's ``chromium`` is used; :func:`find_chromium` installs it with apt-get when it
is missing and this process may (root, apt-get present), as ``.ci/run`` does.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import websocket


def find_chromium() -> tuple[str | None, str]:
    """``(executable, "")``, or ``(None, why it cannot be had)``."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found, ""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None, "chromium is not installed and apt-get cannot be run here (not root, or no apt-get)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = subprocess.run(
        ["apt-get", "install", "-y", "-qq", "chromium"], capture_output=True, text=True, env=env, timeout=900
    )
    if install.returncode != 0:
        update = subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True, env=env, timeout=600)
        install = subprocess.run(
            ["apt-get", "install", "-y", "-qq", "chromium"], capture_output=True, text=True, env=env, timeout=900
        )
        if install.returncode != 0:
            why = (install.stderr or update.stderr).strip().splitlines()[-1:] or ["no output"]
            return None, f"apt-get install chromium failed: {why[0]}"
    found = shutil.which("chromium")
    return (found, "") if found else (None, "apt-get installed chromium but there is no chromium command")


class Browser:
    """One headless chromium with one page. ``requests`` collects every URL the page
    asked for (Network.requestWillBeSent)."""

    def __init__(self, executable: str, width: int = 1400, height: int = 860, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="infratrace-chromium-")
        argv = [
            executable,
            "--headless=new",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            # Offline: no name resolves but 127.0.0.1's.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            f"--window-size={width},{height}",
            f"--user-data-dir={self.profile}",
            "--remote-debugging-port=0",
            "about:blank",
        ]
        if os.geteuid() == 0:
            argv.insert(1, "--no-sandbox")  # chromium refuses to run as root with its sandbox
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.requests: list[str] = []
        self.console: list[str] = []
        self._next = 0
        try:
            port = self._port()
            self.ws = websocket.create_connection(self._page_socket(port), timeout=timeout, suppress_origin=True)
            self.call("Page.enable")
            self.call("Runtime.enable")
            self.call("Network.enable")
            self.call(
                "Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
            )
        except BaseException:
            self.close()
            raise

    def _port(self) -> int:
        marker = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited with status {self.process.returncode}")
            try:
                text = marker.read_text()
            except FileNotFoundError:
                text = ""
            if "\n" in text:
                return int(text.split("\n", 1)[0])
            time.sleep(0.05)
        raise RuntimeError("chromium did not open its DevTools port")

    def _page_socket(self, port: int) -> str:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as response:
                targets = json.loads(response.read())
            pages = [t for t in targets if t.get("type") == "page"]
            if pages:
                return str(pages[0]["webSocketDebuggerUrl"])
            time.sleep(0.05)
        raise RuntimeError("chromium has no page")

    # -- the protocol ---------------------------------------------------------------------
    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self._next += 1
        ident = self._next
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params or {}}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))
            self._event(message)

    def _event(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        params = message.get("params", {})
        if method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
        elif method == "Runtime.exceptionThrown":
            self.console.append(json.dumps(params.get("exceptionDetails", {}))[:2000])
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning"):
            self.console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, what: str) -> Any:
        """Evaluate ``expression`` until it is truthy; its value."""
        deadline = time.monotonic() + self.timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"the page never showed {what} ({expression}); console: {self.console}")
            time.sleep(0.05)

    def navigate(self, url: str) -> None:
        self.call("Page.navigate", {"url": url})
        self.wait_for("document.readyState === 'complete' && location.href !== 'about:blank'", "a loaded document")

    def click(self, selector: str) -> None:
        """A real mouse click at the middle of the element ``selector`` matches."""
        box = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.scrollIntoView({{block: 'center'}});"
            " const r = e.getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2]; })()"
        )
        self.click_at(box[0], box[1])

    def click_at(self, x: float, y: float) -> None:
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})

    def type(self, text: str) -> None:
        """Text typed into the focused element (input events, as from a keyboard)."""
        self.call("Input.insertText", {"text": text})

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        ws = getattr(self, "ws", None)
        if ws is not None:
            try:
                ws.close()
            except Exception:
                pass
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        shutil.rmtree(self.profile, ignore_errors=True)


def start_server(argv: list[str], cwd: Path | None = None) -> tuple[subprocess.Popen[str], str]:
    """``python -m infratrace serve ...`` started; ``(process, url)`` once it listens."""
    import sys

    process = subprocess.Popen(
        [sys.executable, "-m", "infratrace", "serve", *argv, "--port", "0", "--interval", "0.2"],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if "http://127.0.0.1:" not in line:
        process.kill()
        _, err = process.communicate(timeout=10)
        raise RuntimeError(f"serve did not start: {line!r} {err!r}")
    url = line[line.index("http://") :].split()[0]
    return process, url


def stop(process: subprocess.Popen[str], interrupt: Callable[[subprocess.Popen[str]], None] | None = None) -> int:
    """Stop a started process as Ctrl+C would; its exit status."""
    import signal

    if process.poll() is None:
        (interrupt or (lambda p: p.send_signal(signal.SIGINT)))(process)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    return int(process.returncode)
