"""vLLM as a managed server: ``--model vllm:PATH_OR_ID_OR_ALIAS``.

evalsuite starts ``python -m vllm.entrypoints.openai.api_server`` from vLLM's
own interpreter (``-M vllm_python``, ``$EVALSUITE_VLLM_PYTHON``, or the venv
``make vllm-venv`` builds), on 127.0.0.1 and a free port, waits for
``/health``, and evaluates through the OpenAI-compatible backend.  Each server
runs under a watchdog (:mod:`evalsuite.backends.watchdog`) that stops its
whole process group when evalsuite finishes, fails, is interrupted -- or is
killed outright.  ``-M data_parallel=N`` starts N replicas (on N GPU sets)
and spreads requests over them as an endpoint pool.

vLLM options (``-M key=value``), besides the OpenAI backend's:
  vllm_python              interpreter with vLLM installed
  tensor_parallel_size     GPUs per replica
  data_parallel            replicas (default 1)
  max_model_len            context length
  gpu_memory_utilization   fraction of GPU memory for weights and KV cache
  kv_cache_space           GiB of KV cache on CPU (VLLM_CPU_KVCACHE_SPACE, default 2;
                           without it vLLM reserves 92 % of RAM and dies)
  enforce_eager            true/false (default true on CPU: starts in ~20 s instead of ~50 s)
  startup_timeout          seconds to wait for /health (default 900)
  vllm_args                further server arguments, shell-quoted (not the model, host,
                           port, dtype, revision or tensor parallelism evalsuite sets)

``--dtype auto`` is float32 on CPU, as in the HF backend (vLLM alone would
downcast to bfloat16 and give other completions); ``--revision`` is passed on.

``python -m evalsuite.backends.vllm_server [MODEL] --port N`` serves a model
in the foreground for other tools (``make vllm-serve``).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from collections import deque
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from evalsuite.backends.base import BackendOptions
from evalsuite.backends.models import DEFAULT_MODEL, ResolvedModel, cache_dir, resolve_model
from evalsuite.backends.openai_api import OpenAIBackend, OpenAISettings, _number
from evalsuite.backends.watchdog import GRACE_S, session_members, terminate_session
from evalsuite.errors import UserError, key_values, unknown_name

VLLM_VERSION = "0.32.0"  # the pin `make vllm-venv` installs (Makefile: VLLM_VERSION)
PYTHON_ENV = "EVALSUITE_VLLM_PYTHON"
VLLM_OPTIONS = {
    "vllm_python", "tensor_parallel_size", "data_parallel", "max_model_len", "gpu_memory_utilization",
    "kv_cache_space", "enforce_eager", "startup_timeout", "vllm_args",
}
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
# Server flags evalsuite sets itself: vLLM takes the last of a repeated flag, so one in -M vllm_args would
# move the server off the port evalsuite waits on, or serve weights other than run.json and the cache record.
OWNED_FLAGS = {
    "--model": "give the model as vllm:MODEL", "--served-model-name": "evalsuite names the model",
    "--host": "evalsuite serves on 127.0.0.1", "--port": "evalsuite picks a free port", "--uds": "evalsuite serves on a port",
    "--dtype": "use evalsuite's --dtype", "--revision": "use evalsuite's --revision",
    "--tensor-parallel-size": "use -M tensor_parallel_size", "-tp": "use -M tensor_parallel_size",
}
DTYPES = {"auto": "auto", "float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
          "float16": "float16", "fp16": "float16"}


def vllm_python(explicit: str | None = None) -> str:
    """The interpreter that has vLLM; raises ``UserError`` with the fix if it is missing."""
    path = explicit or os.environ.get(PYTHON_ENV) or str(cache_dir() / f"vllm-venv-{VLLM_VERSION}" / "bin" / "python")
    if not Path(path).is_file():
        raise UserError(f"no vLLM interpreter at {path}: build it with `make vllm-venv`, or point -M vllm_python "
                        f"(or ${PYTHON_ENV}) at a Python that has vLLM installed")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class VLLMServer:
    """One vLLM OpenAI-compatible server on 127.0.0.1, owned by a watchdog process."""

    def __init__(self, python: str, model: str, served_name: str, args: list[str], env: dict[str, str], port: int | None = None) -> None:
        self.python, self.model, self.served_name, self.args, self.env = python, model, served_name, args, env
        self.port = port or free_port()
        logs = cache_dir() / "vllm-logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.log_path = logs / f"vllm-{time.strftime('%Y%m%d-%H%M%S')}-{self.port}.log"
        self.watchdog: subprocess.Popen | None = None
        self.pid: int | None = None  # the server's; also its session id

    @property
    def command(self) -> list[str]:
        return [self.python, "-m", "vllm.entrypoints.openai.api_server", "--model", self.model,
                "--served-model-name", self.served_name, "--host", "127.0.0.1", "--port", str(self.port), *self.args]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        self.watchdog = subprocess.Popen(
            [sys.executable, "-m", "evalsuite.backends.watchdog", str(self.log_path), "--", *self.command],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={**os.environ, **self.env},
        )
        assert self.watchdog.stdout is not None
        line = self.watchdog.stdout.readline()
        if not line.strip().isdigit():
            self.stop()
            raise UserError(f"could not start the vLLM server: {self.log_tail()}")
        self.pid = int(line)

    def wait_ready(self, timeout: float) -> None:
        """Block until GET /health answers 200; raise ``UserError`` with the log's tail if
        the server exits or is not ready within ``timeout`` seconds."""
        assert self.watchdog is not None
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=5) as client:
            while time.monotonic() < deadline:
                if self.watchdog.poll() is not None:
                    raise UserError(f"the vLLM server exited (status {self.watchdog.returncode}) while starting; "
                                    f"the end of {self.log_path}:\n{self.log_tail()}")
                try:
                    if client.get(f"http://127.0.0.1:{self.port}/health").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
        raise UserError(f"the vLLM server did not answer /health within {timeout:g} s (-M startup_timeout); "
                        f"the end of {self.log_path}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 25) -> str:
        try:
            with self.log_path.open(errors="replace") as f:
                return "".join(deque(f, maxlen=lines)).rstrip() or "(empty log)"
        except OSError:
            return "(no log)"

    def port_taken(self) -> bool:
        return "address already in use" in self.log_tail(60).lower()

    def stop(self) -> None:
        """Stop the server's whole process group and wait until it is gone."""
        if self.watchdog is None:
            return
        if self.watchdog.poll() is None:
            assert self.watchdog.stdin is not None
            try:
                self.watchdog.stdin.close()  # EOF: the watchdog terminates the server's session
            except OSError:
                pass
            try:
                self.watchdog.wait(timeout=GRACE_S + 10)
            except subprocess.TimeoutExpired:
                self.watchdog.kill()
        if self.pid is not None and session_members(self.pid):
            terminate_session(self.pid, grace=0)
        self.watchdog = None


def start_servers(servers: list[VLLMServer], timeout: float) -> None:
    """Start replicas side by side; a replica whose port was taken meanwhile moves to another."""
    for s in servers:
        s.start()
        _say(f"starting vLLM server (pid {s.pid}) on 127.0.0.1:{s.port} for {s.served_name} (log: {s.log_path})")
    began = time.monotonic()
    for s in servers:
        for attempt in range(3):
            try:
                s.wait_ready(max(1.0, timeout - (time.monotonic() - began)))
                break
            except UserError:
                if not s.port_taken() or attempt == 2:
                    raise
                s.stop()
                s.port = free_port()
                s.start()
                _say(f"port taken; restarted the vLLM server (pid {s.pid}) on 127.0.0.1:{s.port}")
    _say(f"vLLM ready after {time.monotonic() - began:.0f} s: {', '.join(s.base_url for s in servers)}")


def plan_servers(resolved: ResolvedModel, options: BackendOptions, vllm: dict[str, Any], port: int | None = None) -> tuple[str, list[VLLMServer]]:
    """The device ("cpu" or "cuda") and the (not yet started) replicas for a model.

    Raises ``UserError`` for a bad option or a missing vLLM interpreter."""
    check_vllm_options(vllm)
    device = "cpu" if options.device == "cpu" or (options.device == "auto" and not Path("/dev/nvidiactl").exists()) else "cuda"
    cpu = device == "cpu"
    if options.dtype not in DTYPES:
        raise UserError(f"unknown dtype '{options.dtype}': use auto, float32, bfloat16 or float16")
    args = ["--dtype", "float32" if cpu and options.dtype == "auto" else DTYPES[options.dtype]]
    if options.revision:
        args += ["--revision", options.revision]
    try:
        tp, replicas = int(vllm.get("tensor_parallel_size", 1)), int(vllm.get("data_parallel", 1))
    except ValueError:
        raise UserError("-M data_parallel and -M tensor_parallel_size must be integers") from None
    if replicas < 1 or tp < 1:
        raise UserError("-M data_parallel and -M tensor_parallel_size must be at least 1")
    if tp > 1:
        args += ["--tensor-parallel-size", str(tp)]
    for key, flag in (("max_model_len", "--max-model-len"), ("gpu_memory_utilization", "--gpu-memory-utilization")):
        if key in vllm:
            args += [flag, str(vllm[key])]
    if _truthy(vllm.get("enforce_eager", cpu)):
        args.append("--enforce-eager")
    args += shlex.split(str(vllm.get("vllm_args", "")))  # checked by check_vllm_options
    env = {"VLLM_CPU_KVCACHE_SPACE": str(vllm.get("kv_cache_space", os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2")))}
    # --device cuda:N: the replicas' GPUs start at the N-th visible one, as torch counts them
    first = int(options.device.split(":")[1]) if re.fullmatch(r"cuda:\d+", options.device) else 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    gpus = (visible.split(",") if visible else [str(i) for i in range(first + replicas * tp)])[first:]
    if not cpu and len(gpus) < replicas * tp:
        raise UserError(f"{replicas} replicas x {tp} GPUs from GPU {first} on need {replicas * tp} GPUs; "
                        f"CUDA_VISIBLE_DEVICES has {len(gpus)} from there")
    python = vllm_python(vllm.get("vllm_python"))  # after the options: a typo is named first
    servers = []
    for i in range(replicas):
        replica_env = dict(env)
        if not cpu:  # each replica on its own set of GPUs
            replica_env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus[i * tp : (i + 1) * tp])
        servers.append(VLLMServer(python, str(resolved.loadable), resolved.id, args, replica_env, port=port))
    return device, servers


def check_vllm_options(vllm: dict[str, Any]) -> None:
    """Raise ``UserError`` for a vLLM option vLLM itself would refuse only after
    its start (a minute on a CPU, and a page of its log): numbers out of range,
    a flag that is not a boolean, ``vllm_args`` that are not shell words."""
    _number(vllm, "startup_timeout", None, float)
    _number(vllm, "kv_cache_space", None, int)
    share = _number(vllm, "gpu_memory_utilization", None, float)
    if share is not None and share > 1:
        raise UserError(f"-M gpu_memory_utilization is a share of the GPU's memory, at most 1, got {vllm['gpu_memory_utilization']!r}")
    length = str(vllm.get("max_model_len", "auto"))
    if not re.fullmatch(r"auto|-1|[1-9]\d*(\.\d+)?[kKmM]?", length):  # vLLM's forms: 4096, 32k, 1.5k, auto, -1
        raise UserError(f"-M max_model_len must be a number of tokens (e.g. 4096 or 32k) or auto, got {length!r}")
    if "enforce_eager" in vllm and str(vllm["enforce_eager"]).lower() not in (*TRUE, *FALSE):
        raise UserError(f"-M enforce_eager must be true or false, got {vllm['enforce_eager']!r}")
    try:
        words = shlex.split(str(vllm.get("vllm_args", "")))
    except ValueError as exc:
        raise UserError(f"-M vllm_args are not shell words ({exc}): {vllm['vllm_args']!r}") from None
    for word in words:
        flag = word.split("=", 1)[0]
        flag = "--" + flag[2:].replace("_", "-") if flag.startswith("--") else flag  # vLLM reads --max_model_len too
        if flag in OWNED_FLAGS:
            raise UserError(f"-M vllm_args may not set {flag}: {OWNED_FLAGS[flag]}")


class VLLMBackend(OpenAIBackend):
    name = "vllm"

    def __init__(self, model: str, options: BackendOptions) -> None:
        extra = dict(options.extra)
        if "base_url" in extra:
            raise UserError("vllm: starts its own server; to use a running one, use --model openai:NAME -M base_url=...")
        vllm = {k: extra.pop(k) for k in list(extra) if k in VLLM_OPTIONS}
        OpenAISettings.parse(extra, ["http://127.0.0.1/v1"], VLLM_OPTIONS)  # a typo fails now, not after the start
        resolved = resolve_model(model or DEFAULT_MODEL)
        self.device, self.servers = plan_servers(resolved, options, vllm)
        first = self.servers[0]
        try:
            start_servers(self.servers, _number(vllm, "startup_timeout", 900.0, float))
            super().__init__(resolved.id, replace(options, extra=extra), base_urls=[s.base_url for s in self.servers], info={
                "backend": self.name, "path": str(resolved.source), "file_hash": resolved.file_hash,
                "dtype": first.args[first.args.index("--dtype") + 1], "device": self.device,
            }, also_known=VLLM_OPTIONS)
        except BaseException:
            self._stop_servers()
            raise
        self.info = self.info.model_copy(update={"server": self.info.server.model_copy(update={"command": first.command})})

    def _stop_servers(self) -> None:
        for s in self.servers:
            s.stop()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._stop_servers()


def _truthy(value: Any) -> bool:
    return str(value).lower() in TRUE


def _say(message: str) -> None:
    print(f"evalsuite: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Serve a model in the foreground until Ctrl-C (``make vllm-serve``)."""
    parser = argparse.ArgumentParser(prog="python -m evalsuite.backends.vllm_server", description=main.__doc__)
    parser.add_argument("model", nargs="?", default=DEFAULT_MODEL, help="alias, folder, .gguf or hub id")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("-M", dest="options", action="append", default=[], metavar="KEY=VALUE", help="vLLM option, as for vllm:")
    args = parser.parse_args(argv)
    try:
        known, options = VLLM_OPTIONS - {"data_parallel"}, key_values(args.options, "-M")
        for key in options:
            if key not in known:  # a typo is named, not silently dropped
                raise unknown_name("-M option", key, known)
        resolved = resolve_model(args.model)
        _, (server,) = plan_servers(resolved, BackendOptions(), {**options, "data_parallel": 1}, port=args.port)
        start_servers([server], float(options.get("startup_timeout", 900)))
        print(f"serving {resolved.id} at {server.base_url}  (evalsuite run --model openai:{resolved.id} "
              f"-M base_url={server.base_url}); Ctrl-C stops it", flush=True)
        while server.watchdog is not None and server.watchdog.poll() is None:
            time.sleep(1)
        print(f"the server exited; the end of its log:\n{server.log_tail()}", file=sys.stderr)
        return 1
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    finally:
        if "server" in locals():
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
