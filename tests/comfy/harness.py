"""Drive a real ComfyUI (``$COMFYUI_DIR``: 0.3.75 or 0.33.0 under ``make test``) with this repository
mounted as a custom-node pack.

Three ways in, all against one server started by :class:`ComfyServer`:

* HTTP + websocket (:class:`ComfyClient`): queue an API prompt, await its events, read the
  history, download outputs through ``/view``.
* comfy-cli 1.23.0 (:func:`comfy_cli_run`): ``comfy run --workflow F --wait --json``.
* The real frontend in Debian's chromium through playwright (:class:`Frontend`,
  :func:`load_ui_workflow`, :func:`api_to_ui`).

The ComfyUI tree and every package come from ``make comfy`` (or ``make comfy-current``), and the
server runs with the interpreter running the tests; nothing here touches the network.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.prefix)  # the venv running the tests: make test runs one per ComfyUI version
PACK_NAME = "ComfyUI-RAP"
SUPPORT_NODES = Path(__file__).resolve().parent / "support_nodes"  # test-only nodes (a text embedding for Wan)
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
PROBLEM_MARKERS = ("IMPORT FAILED", "Cannot import", "Traceback", "Failed to initialize database")
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}

JSON = dict[str, Any]


def comfy_dir() -> Path:
    """The ComfyUI tree under test: ``$COMFYUI_DIR``, else ``.cache/comfyui`` (``make comfy``)."""
    env = os.environ.get("COMFYUI_DIR")
    path = Path(env).expanduser().resolve() if env else REPO_ROOT / ".cache" / "comfyui"
    if not (path / "main.py").is_file():
        raise FileNotFoundError(f"no ComfyUI at {path} (main.py missing): run `make comfy`")
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ComfyError(RuntimeError):
    """An HTTP call to ComfyUI failed; ``status`` and the decoded ``body`` say how."""

    def __init__(self, message: str, status: int, body: Any) -> None:
        super().__init__(f"{message}: HTTP {status}: {json.dumps(body)[:4000]}")
        self.status = status
        self.body = body


class ComfyServer:
    """A ComfyUI process with this repo mounted as the ``ComfyUI-RAP`` pack (and the test-only
    ``support_nodes`` pack beside it).

    Everything it writes goes to a throwaway base directory (``models/``, ``input/``,
    ``output/``, ``temp/``, ``user/``, plus the ``extra_model_paths.yaml`` that mounts the
    pack). Files under the repo's ``assets/`` are copied into ``input/``. Use as a context
    manager; it is stopped by its PID (terminate, then kill).

    ``model_paths`` adds folder entries to the yaml, e.g. ``{"diffusion_models": "/x/y"}``;
    ``extra_args`` are appended to ``main.py``'s command line.
    """

    def __init__(
        self,
        *,
        mount_pack: bool = True,
        model_paths: Mapping[str, str | os.PathLike[str]] | None = None,
        extra_args: Iterable[str] = (),
        boot_timeout: float = 180.0,
        keep_base: bool = False,
    ) -> None:
        self.comfy = comfy_dir()
        self.mount_pack = mount_pack
        self.model_paths = dict(model_paths or {})
        self.extra_args = list(extra_args)
        self.boot_timeout = boot_timeout
        self.keep_base = keep_base
        self.host = "127.0.0.1"
        self.port = 0
        self.base = Path()
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None
        self._excused: list[tuple[int, int]] = []

    # -- paths ------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://{self.host}:{self.port}"

    @property
    def input_dir(self) -> Path:
        return self.base / "input"

    @property
    def output_dir(self) -> Path:
        return self.base / "output"

    @property
    def log_path(self) -> Path:
        return self.base / "comfyui.log"

    # -- lifecycle --------------------------------------------------------------------
    def __enter__(self) -> ComfyServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _prepare_base(self) -> Path:
        base = Path(tempfile.mkdtemp(prefix="comfy-rap-"))
        for sub in ("models", "input", "output", "temp", "user", "custom_nodes", "packs"):
            (base / sub).mkdir()
        entries: dict[str, str] = {k: str(Path(v).resolve()) for k, v in self.model_paths.items()}
        if self.mount_pack:
            (base / "packs" / PACK_NAME).symlink_to(REPO_ROOT, target_is_directory=True)
            (base / "packs" / "rap-test-support").symlink_to(SUPPORT_NODES, target_is_directory=True)
            entries["custom_nodes"] = str(base / "packs")
        if entries:
            lines = ["comfyui_rap_tests:"] + [f"  {k}: {json.dumps(v)}" for k, v in entries.items()]
            (base / "extra_model_paths.yaml").write_text("\n".join(lines) + "\n")
        assets = REPO_ROOT / "assets"
        if assets.is_dir():
            shutil.copytree(assets, base / "input", dirs_exist_ok=True)
        return base

    def command(self) -> list[str]:
        """The ``main.py`` command line (valid once the base directory exists)."""
        cmd = [
            sys.executable, "main.py", "--cpu",
            "--listen", self.host, "--port", str(self.port),
            "--base-directory", str(self.base),
            "--database-url", f"sqlite:///{self.base / 'user' / 'comfyui.db'}",
            "--disable-auto-launch",
        ]  # fmt: skip
        if (self.base / "extra_model_paths.yaml").exists():
            cmd += ["--extra-model-paths-config", str(self.base / "extra_model_paths.yaml")]
        return cmd + self.extra_args

    def start(self) -> None:
        """Create the base directory, launch ``main.py`` and wait for ``/system_stats``."""
        if self.process is not None:
            raise RuntimeError("server already started")
        self.base = self._prepare_base()
        self.port = free_port()
        env = dict(os.environ, PYTHONUNBUFFERED="1", **OFFLINE_ENV)
        self._log_file = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            self.command(),
            cwd=self.comfy,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + self.boot_timeout
        while True:
            if self.process.poll() is not None:
                tail = self.log_tail()
                self.stop()
                raise RuntimeError(f"ComfyUI exited with {self.process.returncode} while starting:\n{tail}")
            try:
                with urllib.request.urlopen(f"{self.url}/system_stats", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                tail = self.log_tail()
                self.stop()
                raise TimeoutError(f"ComfyUI did not answer within {self.boot_timeout:.0f}s:\n{tail}")
            time.sleep(0.25)

    def stop(self) -> None:
        """Stop the process by its PID (terminate, wait, kill) and drop the base directory."""
        proc = self.process
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if not self.keep_base and self.base != Path() and self.base.exists():
            shutil.rmtree(self.base, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # -- log --------------------------------------------------------------------------
    def log_text(self) -> str:
        """The whole server log so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def log_problems(self) -> list[str]:
        """Log lines with any of ``PROBLEM_MARKERS``, except those
        written inside :meth:`expect_errors` blocks."""
        lines = self.log_text().splitlines()
        return [
            ln
            for i, ln in enumerate(lines)
            if any(m in ln for m in PROBLEM_MARKERS) and not any(a <= i < b for a, b in self._excused)
        ]

    @contextmanager
    def expect_errors(self) -> Iterator[None]:
        """Excuse the log lines written meanwhile from :meth:`log_problems` (for tests that
        make a node fail on purpose: ComfyUI logs the traceback of an ``execution_error``)."""
        start = len(self.log_text().splitlines())
        try:
            yield
        finally:
            time.sleep(0.2)  # let the server finish writing the traceback
            self._excused.append((start, len(self.log_text().splitlines())))

    def client(self, client_id: str | None = None) -> ComfyClient:
        """A new :class:`ComfyClient` for this server."""
        return ComfyClient(self.url, client_id=client_id, server=self)


@dataclass
class Run:
    """What the websocket said about one prompt, in order (``events`` = ``(type, data)``)."""

    prompt_id: str
    events: list[tuple[str, JSON]] = field(default_factory=list)

    def of(self, kind: str) -> list[JSON]:
        """The data of every event of one type."""
        return [data for t, data in self.events if t == kind]

    @property
    def status(self) -> str:
        """``success``, ``error``, ``interrupted`` or ``unknown``."""
        kinds = {t for t, _ in self.events}
        for kind, name in (
            ("execution_error", "error"),
            ("execution_interrupted", "interrupted"),
            ("execution_success", "success"),
        ):
            if kind in kinds:
                return name
        return "unknown"

    @property
    def error(self) -> JSON | None:
        """The ``execution_error`` data (node_id, node_type, exception_type/message, traceback)."""
        errors = self.of("execution_error")
        return errors[0] if errors else None

    @property
    def progress(self) -> list[tuple[int, int, str]]:
        """``(value, max, node)`` of each ``progress`` event."""
        return [(int(d["value"]), int(d["max"]), str(d.get("node"))) for d in self.of("progress")]

    @property
    def executed_nodes(self) -> list[str]:
        """Node ids announced by ``executing`` (the final ``None`` left out)."""
        return [str(d["node"]) for d in self.of("executing") if d.get("node") is not None]

    def raise_for_status(self) -> None:
        """Raise ``RuntimeError`` unless the prompt succeeded, with the error message."""
        if self.status == "success":
            return
        err = self.error
        if err is not None:
            raise RuntimeError(
                f"prompt {self.prompt_id} failed in node {err.get('node_id')} ({err.get('node_type')}): "
                f"{err.get('exception_type')}: {err.get('exception_message')}\n" + "".join(err.get("traceback") or [])
            )
        raise RuntimeError(f"prompt {self.prompt_id} ended as {self.status}: {[t for t, _ in self.events]}")


class ComfyClient:
    """HTTP + websocket client for one ComfyUI server, with its own ``client_id``.

    The websocket is opened before the first prompt is queued, so no event is missed;
    events of prompts not being awaited are kept for a later :meth:`wait`.
    """

    def __init__(
        self,
        base_url: str,
        *,
        client_id: str | None = None,
        http_timeout: float = 60.0,
        server: ComfyServer | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id or uuid.uuid4().hex
        self.http_timeout = http_timeout
        self.server = server
        self._ws: Any = None
        self._pending: dict[str, list[tuple[str, JSON]]] = {}

    def __enter__(self) -> ComfyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._ws is not None:
            self._ws.close()
            self._ws = None

    # -- HTTP -------------------------------------------------------------------------
    def _request(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        import requests

        resp = requests.request(method, self.base_url + path, timeout=self.http_timeout, **kwargs)
        if resp.status_code != 200:
            try:
                body: Any = resp.json()
            except ValueError:
                body = resp.text
            raise ComfyError(what, resp.status_code, body)
        return resp

    def connect(self) -> None:
        """Open the websocket ``/ws?clientId=`` (done by :meth:`queue` when needed)."""
        if self._ws is None:
            import websocket

            ws_url = self.base_url.replace("http", "ws", 1) + f"/ws?clientId={self.client_id}"
            self._ws = websocket.create_connection(ws_url, timeout=self.http_timeout)

    def queue(self, prompt: Mapping[str, Any], *, extra_data: Mapping[str, Any] | None = None) -> str:
        """POST ``/prompt``; returns the prompt id. HTTP 400 raises :class:`ComfyError`
        whose ``body`` is ComfyUI's JSON (``error.type``, ``node_errors``)."""
        self.connect()
        payload: JSON = {"prompt": prompt, "client_id": self.client_id}
        if extra_data:
            payload["extra_data"] = dict(extra_data)
        body = self._request("POST", "/prompt", "prompt rejected", json=payload).json()
        prompt_id = str(body["prompt_id"])
        self._pending.setdefault(prompt_id, [])
        return prompt_id

    def history(self, prompt_id: str) -> JSON:
        """``GET /history/<id>``: ``{prompt, outputs, status, meta}`` of that prompt."""
        body = self._request("GET", f"/history/{prompt_id}", "history").json()
        if prompt_id not in body:
            raise KeyError(f"prompt {prompt_id} not in history")
        return dict(body[prompt_id])

    def download(self, file_info: Mapping[str, Any]) -> bytes:
        """The bytes of an output file (``filename``, ``subfolder``, ``type``) via ``/view``."""
        params = {
            "filename": file_info["filename"],
            "subfolder": file_info.get("subfolder", ""),
            "type": file_info.get("type", "output"),
        }
        return bytes(self._request("GET", "/view", "download", params=params).content)

    def interrupt(self) -> None:
        """POST ``/interrupt`` (stops the running prompt)."""
        self._request("POST", "/interrupt", "interrupt", json={})

    def object_info(self) -> JSON:
        """``GET /object_info``: every registered node class."""
        return dict(self._request("GET", "/object_info", "object_info").json())

    # -- websocket --------------------------------------------------------------------
    def wait(self, prompt_id: str, timeout: float = 300.0) -> Run:
        """Collect the prompt's websocket events until ``executing`` with node ``None``.

        Raises ``TimeoutError`` (with the events so far and the server log tail) if that
        does not come within ``timeout`` seconds, or ``RuntimeError`` if the server dies.
        """
        import websocket

        self.connect()
        run = Run(prompt_id, self._pending.pop(prompt_id, []))
        if self._finished(run):
            return run
        deadline = time.monotonic() + timeout
        self._ws.settimeout(1.0)
        try:
            while True:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"prompt {prompt_id} not finished after {timeout:.0f}s; events: "
                        f"{[t for t, _ in run.events]}\n{self._log_tail()}"
                    )
                if self.server is not None and not self.server.running:
                    raise RuntimeError(f"ComfyUI died while running {prompt_id}:\n{self._log_tail()}")
                try:
                    raw = self._ws.recv()
                except websocket.WebSocketTimeoutException:
                    continue
                if not isinstance(raw, str):  # binary frames are previews
                    continue
                msg = json.loads(raw)
                kind, data = str(msg.get("type")), dict(msg.get("data") or {})
                owner = data.get("prompt_id")
                if owner is None:
                    continue
                if owner != prompt_id:
                    self._pending.setdefault(str(owner), []).append((kind, data))
                    continue
                run.events.append((kind, data))
                if self._finished(run):
                    return run
        finally:
            if self._ws is not None:
                self._ws.settimeout(self.http_timeout)

    def wait_progress(self, prompt_id: str, node: str, at_least: int, timeout: float = 120.0) -> int:
        """Read the websocket until node ``node`` of the prompt reports progress ``>= at_least``;
        returns that value. The events read are kept for :meth:`wait`."""
        self.connect()
        deadline = time.monotonic() + timeout
        self._ws.settimeout(timeout)
        try:
            while time.monotonic() < deadline:
                raw = self._ws.recv()
                if not isinstance(raw, str):
                    continue
                msg = json.loads(raw)
                kind, data = str(msg.get("type")), dict(msg.get("data") or {})
                if data.get("prompt_id") is None:
                    continue
                self._pending.setdefault(str(data["prompt_id"]), []).append((kind, data))
                if data["prompt_id"] == prompt_id and kind == "progress" and str(data.get("node")) == node:
                    if int(data["value"]) >= at_least:
                        return int(data["value"])
        finally:
            self._ws.settimeout(self.http_timeout)
        raise TimeoutError(f"node {node} of {prompt_id} did not reach progress {at_least}:\n{self._log_tail()}")

    @staticmethod
    def _finished(run: Run) -> bool:
        return any(t == "executing" and d.get("node") is None for t, d in run.events)

    def _log_tail(self) -> str:
        return self.server.log_tail() if self.server is not None else ""

    def run(self, prompt: Mapping[str, Any], timeout: float = 300.0) -> Run:
        """Queue a prompt and wait for it."""
        return self.wait(self.queue(prompt), timeout)


def animated_outputs(history_entry: Mapping[str, Any]) -> list[JSON]:
    """File infos of video outputs (``SaveVideo``: key ``images`` with ``animated: [true]``)."""
    files: list[JSON] = []
    for out in history_entry.get("outputs", {}).values():
        if any(out.get("animated") or []):
            files += list(out.get("images") or [])
    return files


# -- comfy-cli --------------------------------------------------------------------------
def comfy_cli_run(
    workflow_path: str | os.PathLike[str], port: int, timeout: float = 300.0
) -> subprocess.CompletedProcess[str]:
    """``comfy --skip-prompt --workspace <comfy> run --workflow F --host 127.0.0.1 --port P
    --wait --json`` (comfy-cli 1.23.0), with a throwaway HOME and ``VIRTUAL_ENV`` the tests' venv.

    stdout holds NDJSON events (see :func:`ndjson`); the return code is 0 on success.
    """
    comfy_bin = VENV / "bin" / "comfy"
    if not comfy_bin.exists():
        comfy_bin = Path(shutil.which("comfy") or "comfy")
    with tempfile.TemporaryDirectory(prefix="comfy-cli-home-") as home:
        env = dict(
            os.environ,
            HOME=home,
            XDG_CONFIG_HOME=str(Path(home) / ".config"),
            VIRTUAL_ENV=str(VENV),
            PATH=f"{VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            DO_NOT_TRACK="1",
            COMFY_NO_UPDATE_CHECK="1",
            COMFY_NO_WATCH="1",
            **OFFLINE_ENV,
        )
        cmd = [
            str(comfy_bin), "--skip-prompt", "--workspace", str(comfy_dir()),
            "run", "--workflow", str(Path(workflow_path).resolve()),
            "--host", "127.0.0.1", "--port", str(port),
            "--wait", "--json", "--timeout", str(max(1, int(timeout))),
        ]  # fmt: skip
        return subprocess.run(
            cmd, env=env, cwd=home, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=timeout + 60,
        )  # fmt: skip


def ndjson(text: str) -> list[JSON]:
    """The JSON objects of an NDJSON stream (other lines skipped)."""
    events: list[JSON] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return events


# -- the real frontend in chromium ------------------------------------------------------
class Frontend:
    """The server's web UI in headless Debian chromium (playwright sync API).

    ``page`` is ready once ``window.app`` and ``window.LiteGraph`` exist, every class of
    ``/object_info`` is in ``LiteGraph.registered_node_types`` and the first workflow is
    open. Uncaught page errors go to ``page_errors``; console errors to ``console_errors``.
    ``extra_args`` are appended to chromium's command line (e.g. a fake microphone).
    """

    def __init__(self, server_url: str, *, timeout: float = 90.0, extra_args: Iterable[str] = ()) -> None:
        self.url = server_url.rstrip("/")
        self.extra_args = list(extra_args)
        self.timeout_ms = timeout * 1000
        self.page_errors: list[str] = []
        self.console_errors: list[str] = []
        self.page: Any = None
        self._pw: Any = None
        self._context: Any = None
        self._profile: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> Frontend:
        from playwright.sync_api import sync_playwright

        if not Path(CHROMIUM).exists():
            raise FileNotFoundError(f"{CHROMIUM} missing: `make chromium` (apt-get install -y chromium)")
        self._profile = tempfile.TemporaryDirectory(prefix="chromium-profile-")
        self._pw = sync_playwright().start()
        try:
            self._context = self._pw.chromium.launch_persistent_context(
                self._profile.name,
                executable_path=CHROMIUM,
                headless=True,
                args=CHROMIUM_ARGS + self.extra_args,
                viewport={"width": 1280, "height": 800},
            )
            self.page = self._context.pages[0] if self._context.pages else self._context.new_page()
            self.page.set_default_timeout(self.timeout_ms)
            self.page.on("pageerror", lambda err: self.page_errors.append(str(err)))
            self.page.on(
                "console",
                lambda msg: self.console_errors.append(msg.text) if msg.type == "error" else None,
            )
            self.page.goto(self.url + "/", wait_until="domcontentloaded")
            self._wait_ready()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._context is not None:
            self._context.close()
            self._context = None
        if self._pw is not None:
            self._pw.stop()
            self._pw = None
        if self._profile is not None:
            self._profile.cleanup()
            self._profile = None

    def _wait_ready(self) -> None:
        import requests

        self.object_info = requests.get(self.url + "/object_info", timeout=60).json()
        names = sorted(self.object_info)
        self.page.wait_for_function("() => !!(window.app && window.LiteGraph && window.app.graph)")
        try:
            self.page.wait_for_function("names => names.every(n => n in LiteGraph.registered_node_types)", arg=names)
        except Exception as exc:
            missing = self.page.evaluate("names => names.filter(n => !(n in LiteGraph.registered_node_types))", names)
            raise RuntimeError(f"frontend never registered {missing[:20]}; page errors: {self.page_errors}") from exc
        # After setup the app opens its first (blank) workflow; a graph loaded before that
        # would be replaced by it.
        self.page.wait_for_function("() => !!app.extensionManager?.workflow?.activeWorkflow")

    def registered_node_types(self) -> list[str]:
        """``Object.keys(LiteGraph.registered_node_types)``."""
        return list(self.page.evaluate("() => Object.keys(LiteGraph.registered_node_types)"))


_LOAD_UI_JS = """
async (ui) => {
  const subgraphs = new Set(((ui.definitions || {}).subgraphs || []).map(s => s.id));
  const nodes = [...(ui.nodes || [])];
  for (const sg of ((ui.definitions || {}).subgraphs || [])) nodes.push(...(sg.nodes || []));
  const missing = [...new Set(nodes.map(n => n.type)
      .filter(t => !subgraphs.has(t) && !(t in LiteGraph.registered_node_types)))];
  await app.loadGraphData(ui, true, true, null,
                          {showMissingNodesDialog: false, showMissingModelsDialog: false});
  const p = await app.graphToPrompt();
  return JSON.stringify({missing_types: missing, prompt_output: p.output});
}
"""

_API_TO_UI_JS = """
async ([api, control]) => {
  app.loadApiJson(api, 'from_api.json');
  await new Promise(r => setTimeout(r, 0));
  if (control !== null)
    for (const node of app.graph.nodes)
      for (const w of node.widgets ?? [])
        if (w.name === 'control_after_generate') w.value = control;
  return JSON.stringify((await app.graphToPrompt()).workflow);
}
"""


def load_ui_workflow(page: Any, ui_json: Mapping[str, Any]) -> JSON:
    """Load a UI-format workflow with ``app.loadGraphData`` and convert it with the
    frontend's own ``app.graphToPrompt()``.

    Returns ``{"missing_types": [...], "prompt_output": {...}}``: node types that are not in
    ``LiteGraph.registered_node_types`` and the API-format prompt (with ``_meta.title``).
    """
    return dict(json.loads(page.evaluate(_LOAD_UI_JS, dict(ui_json))))


def api_to_ui(page: Any, api_json: Mapping[str, Any], control_after_generate: str | None = "fixed") -> JSON:
    """Turn an API prompt into a UI-format workflow the way the frontend does when such a
    file is dropped on it (``app.loadApiJson``, which also lays the graph out), then take
    the workflow the frontend exports (``(await app.graphToPrompt()).workflow``).

    Seed widgets' ``control_after_generate`` companions are set to ``control_after_generate``
    (the frontend's own default is ``"randomize"``; ``None`` keeps it).
    """
    missing = page.evaluate(
        "api => Object.values(api).map(n => n.class_type).filter(t => !(t in LiteGraph.registered_node_types))",
        dict(api_json),
    )
    if missing:
        raise ValueError(f"node types not registered in the frontend: {sorted(set(missing))}")
    return dict(json.loads(page.evaluate(_API_TO_UI_JS, [dict(api_json), control_after_generate])))


# Node types that show their image below their widgets: the frontend adds the preview, and grows
# the node to hold it, when it first draws the node after the image has loaded.
IMAGE_PREVIEW_NODES = ("LoadImage",)

_NODE_BOXES_JS = """
async (previewing) => {
  const until = (test, what) => new Promise((resolve, reject) => {
    const start = performance.now();
    const poll = () => test() ? resolve()
      : performance.now() - start > 60000 ? reject(new Error(`${what} after 60 s`)) : setTimeout(poll, 50);
    poll();
  });
  for (const node of app.graph.nodes.filter(n => previewing.includes(n.type))) {
    app.canvas.centerOnNode(node);
    app.canvas.setDirty(true, true);
    await until(() => node.widgets?.some(w => w.name === '$$canvas-image-preview'), `no preview in node ${node.id}`);
  }
  await document.fonts.ready;
  const ctx = document.createElement('canvas').getContext('2d');
  const nodes = app.graph.nodes.map(n => {
    const computed = n.computeSize();
    ctx.font = n.titleFontStyle;
    return {id: String(n.id), type: n.type, title: n.getTitle(), pos: [...n.pos],
            size: [Math.max(n.size[0], computed[0]), Math.max(n.size[1], computed[1])],
            title_width: ctx.measureText(n.getTitle()).width};
  });
  return JSON.stringify({title_height: LiteGraph.NODE_TITLE_HEIGHT, nodes});
}
"""


def node_boxes(page: Any) -> JSON:
    """The nodes of the graph open in the frontend as it draws them, once each image preview is in:
    ``{"title_height": h, "nodes": [{id, type, title, pos, size, title_width}]}``. The title bar is
    ``h`` high above ``pos``; ``size`` is the body, the larger of the node's own size and the size the
    frontend computes for its widgets (it grows the node to that); ``title_width`` is the title in the
    frontend's title font."""
    return dict(json.loads(page.evaluate(_NODE_BOXES_JS, list(IMAGE_PREVIEW_NODES))))


def layout_problems(boxes: Mapping[str, Any]) -> list[str]:
    """What hides part of a graph measured by :func:`node_boxes`: two nodes whose boxes (title bar
    included) overlap, and a title wider than the frontend leaves it (the node's width less a title-bar
    height each side; it cuts off the rest)."""
    bar = boxes["title_height"]
    nodes = boxes["nodes"]
    edges = {
        n["id"]: (n["pos"][0], n["pos"][1] - bar, n["pos"][0] + n["size"][0], n["pos"][1] + n["size"][1]) for n in nodes
    }  # left, top, right, bottom
    names = {n["id"]: f"{n['title']} ({n['id']})" for n in nodes}
    problems = [
        f"{names[a]} overlaps {names[b]}"
        for i, a in enumerate(edges)
        for b in list(edges)[i + 1 :]
        if edges[a][0] < edges[b][2]
        and edges[b][0] < edges[a][2]
        and edges[a][1] < edges[b][3]
        and edges[b][1] < edges[a][3]
    ]
    return problems + [
        f"the title of {names[n['id']]} is cut off: {n['title_width']:.0f} px in {n['size'][0] - 2 * bar:.0f}"
        for n in nodes
        if n["title_width"] > n["size"][0] - 2 * bar
    ]


# Inputs that the frontend's graphToPrompt adds for widgets of its own (LoadAudio's player
# serializes as ``"audioUI": ""``); the server ignores them.
FRONTEND_ONLY_INPUTS = frozenset({"audioUI"})


def prompt_core(prompt: Mapping[str, Any]) -> JSON:
    """A prompt reduced to ``class_type`` + ``inputs`` per node (links as ``[str id, slot]``,
    :data:`FRONTEND_ONLY_INPUTS` and ``_meta`` left out), for comparing prompts made by
    different tools."""
    out: JSON = {}
    for node_id, node in prompt.items():
        inputs = {}
        for name, value in node.get("inputs", {}).items():
            if name in FRONTEND_ONLY_INPUTS:
                continue
            if isinstance(value, list) and len(value) == 2 and isinstance(value[1], int):
                value = [str(value[0]), value[1]]
            inputs[name] = value
        out[str(node_id)] = {"class_type": node["class_type"], "inputs": inputs}
    return out


_NO_DEFAULT = object()


def declared_inputs(object_info: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{node class: {input: its default}}`` of the top-level inputs each node of ``/object_info``
    declares (required and optional; an input without a default maps to a value nothing equals)."""
    declared: dict[str, dict[str, Any]] = {}
    for name, info in object_info.items():
        inputs = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
        declared[name] = {
            key: spec[1].get("default", _NO_DEFAULT) if len(spec) > 1 and isinstance(spec[1], dict) else _NO_DEFAULT
            for key, spec in inputs.items()
        }
    return declared


def prompt_diff(
    expected: Mapping[str, Any], actual: Mapping[str, Any], object_info: Mapping[str, Any] | None = None
) -> list[str]:
    """Human-readable differences between two prompts' ``class_type`` + ``inputs``.

    With the server's ``object_info``, an input given on one side only differs only where the
    server would see a difference: not where its node does not declare it (an input of another
    ComfyUI version) nor where the value given is the node's declared default (an input that a
    newer frontend writes out)."""
    a, b = prompt_core(expected), prompt_core(actual)
    declared = declared_inputs(object_info) if object_info is not None else None
    lines = [f"node {n}: missing" for n in a if n not in b] + [f"node {n}: extra" for n in b if n not in a]
    for n in (n for n in a if n in b):
        if a[n]["class_type"] != b[n]["class_type"]:
            lines.append(f"node {n}: class_type {a[n]['class_type']!r} != {b[n]['class_type']!r}")
            continue
        ins_a, ins_b = a[n]["inputs"], b[n]["inputs"]
        defaults = declared.get(a[n]["class_type"], {}) if declared is not None else None
        for key in sorted(set(ins_a) | set(ins_b)):
            if key in ins_a and key in ins_b or defaults is None:
                differs = ins_a.get(key, "<absent>") != ins_b.get(key, "<absent>")
            else:
                given = ins_a[key] if key in ins_a else ins_b[key]
                differs = key in defaults and defaults[key] != given
            if differs:
                lines.append(
                    f"node {n} ({a[n]['class_type']}).{key}: "
                    f"{ins_a.get(key, '<absent>')!r} != {ins_b.get(key, '<absent>')!r}"
                )
    return lines
