"""Data parallelism over Ray: N replicas of any backend, one request stream.

``evalsuite run --model M --ray [ADDRESS] -M replicas=N`` wraps the backend
named by ``M`` in :class:`RayReplicas`.  Each Ray actor builds its own replica
with :func:`evalsuite.backends.models.load_backend` (the HF backend on one
GPU, a served model, ...).  The driver cuts every request list into *units*
of about one replica batch, keeps ``inflight`` units queued per actor so no
replica idles on a round trip, and yields each unit's results the moment it
returns, so the runner appends them to the one ``samples.jsonl`` exactly as
in a single process (and ``--resume`` works unchanged).

Failures:
- a replica that dies (process killed, node lost, GPU fault) is dropped and
  its unfinished requests are dealt to the others, each alone on an idle
  replica; a result is yielded only once, from the call that returned it, so
  nothing is lost or duplicated;
- a request held by two replicas that died (an input that crashes whatever
  runs it) comes back as a ``RequestFailure`` instead of killing every replica;
- a unit whose backend call raises is retried request by request, and a
  request that fails alone comes back as a ``RequestFailure`` (the runner
  records ``generation_error``; ``--resume`` retries it);
- when every replica is gone the run stops with one error line; what was
  written stays, and ``--resume`` continues.

Options (``-M``; the rest go to the replicas' backend):
  replicas=N       actors (default 1)
  num_gpus=G       GPUs per actor (default 1 on a cluster with GPUs, else 0)
  num_cpus=C       CPUs per actor (default 1)
  unit=K           requests per call (default: the replica's batch size)
  inflight=D       calls queued per actor (default 2)
  start_timeout=S  seconds for all replicas to load (default 900)
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import socket
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from evalsuite.backends.base import (
    LOGLIKELIHOOD,
    Backend,
    BackendOptions,
    ChoiceRequest,
    GenerateRequest,
    RequestFailure,
    missing_capability,
)
from evalsuite.backends.models import load_backend
from evalsuite.errors import UserError
from evalsuite.records import ModelInfo, RayInfo, ReplicaInfo

PLACEMENT_KEYS = ("replicas", "num_gpus", "num_cpus", "unit", "inflight", "start_timeout")
# Forwarded to replicas on other nodes (a local instance inherits the environment).
FORWARDED_ENV_PREFIXES = ("EVALSUITE_", "HF_", "TRANSFORMERS_", "ONEDNN_", "VLLM_", "OMP_")
DEFAULT_UNIT = 16


class EvalsuiteReplica:
    """The actor body (its processes show as ``ray::EvalsuiteReplica``): one backend replica.  Errors come back as values so the
    driver never has to unpick Ray's exception wrappers."""

    def __init__(self, spec: str | None, options: BackendOptions) -> None:
        self.error: tuple[str, str] | None = None
        try:
            self.backend: Backend | None = load_backend(spec, options)
        except UserError as exc:
            self.backend, self.error = None, ("user", str(exc))
        except Exception as exc:  # noqa: BLE001 - reported by describe()
            self.backend, self.error = None, ("error", f"{type(exc).__name__}: {exc}")

    def describe(self) -> dict[str, Any]:
        import ray

        if self.backend is None:
            return {"error": self.error}
        return {
            "info": self.backend.info,
            "capabilities": sorted(self.backend.capabilities),
            "capability_notes": dict(self.backend.capability_notes),
            "batch_size": self.backend.effective_batch_size,
            "node": ray.util.get_node_ip_address(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
        }

    def call(self, method: str, requests: list[Any]) -> tuple[str, Any]:
        assert self.backend is not None
        try:
            return "ok", list(getattr(self.backend, method)(requests))
        except UserError as exc:
            return "user", str(exc)
        except Exception as exc:  # noqa: BLE001 - the driver retries request by request
            return "error", f"{type(exc).__name__}: {exc}"

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()


@dataclass
class _Actor:
    index: int
    handle: Any
    info: ReplicaInfo
    queued: int = 0
    alive: bool = True
    isolating: bool = False  # running a suspect request alone (see RayReplicas._deal)


class RayReplicas(Backend):
    """A backend that deals requests to ``replicas`` Ray actors (see module doc)."""

    name = "ray"
    request_chunk = None

    def __init__(self, model: str | None, options: BackendOptions, address: str | None = None) -> None:
        """``address``: a Ray cluster to join (``auto``, ``HOST:PORT``,
        ``ray://HOST:10001``), or None to start a private local instance.

        Raises ``UserError`` for a bad option, a missing ``ray`` package, a
        cluster that cannot place the replicas, or a replica that fails to load."""
        placement, inner = _split_options(options.extra)
        self.n = placement["replicas"]
        self.unit = placement["unit"]
        self.inflight = placement["inflight"]
        self.head = None
        self.actors: list[_Actor] = []
        if not _ray_installed():
            raise UserError("--ray needs Ray: pip install 'evalsuite[ray]'")
        if address is None:
            from evalsuite.backends.ray_head import LocalRayHead

            cpus = max(os.cpu_count() or 1, math.ceil(self.n * placement["num_cpus"]))
            self.head = LocalRayHead(num_cpus=cpus)
            os.environ.update(self.head.env)  # before ray is imported: it reads them once
            address = self.head.address
        else:
            _require_reachable(address)
        import ray

        self.ray = ray
        try:
            self._connect(address)
            num_gpus = placement["num_gpus"]
            if num_gpus is None:
                num_gpus = 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0
            self.actors = self._start(model, replace(options, extra=inner), num_gpus, placement)
        except BaseException:
            self.close()
            raise
        first = self._described[0]
        self.info: ModelInfo = first["info"]
        self.name = f"{self.info.backend} on Ray"  # as error messages name it
        self.capabilities = frozenset(first["capabilities"])
        self.capability_notes = first["capability_notes"]  # e.g. why a server cannot score
        self._batch = first["batch_size"]
        if self.unit is None:
            self.unit = self._batch if isinstance(self._batch, int) else DEFAULT_UNIT
        self.ray_info = RayInfo(
            version=ray.__version__,
            address="local" if self.head else address,
            replicas=self.n,
            num_gpus=float(num_gpus),
            num_cpus=float(placement["num_cpus"]),
            unit=self.unit,
            inflight=self.inflight,
            replica_info=[a.info for a in self.actors],
        )

    # -- start-up --------------------------------------------------------------

    def _connect(self, address: str) -> None:
        try:
            self.ray.init(
                address=address,
                logging_level=logging.ERROR,
                log_to_driver=False,
                runtime_env={"env_vars": {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV_PREFIXES)}},
            )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UserError(f"cannot join the Ray cluster at {address}: {str(exc).splitlines()[0]}") from None

    def _start(self, model: str | None, options: BackendOptions, num_gpus: float, placement: dict[str, Any]) -> list[_Actor]:
        ray = self.ray
        actor_cls = ray.remote(
            num_cpus=placement["num_cpus"], num_gpus=num_gpus, max_restarts=0, max_task_retries=0
        )(EvalsuiteReplica)
        handles = [
            actor_cls.options(scheduling_strategy="SPREAD").remote(model, options) for _ in range(self.n)
        ]
        refs = [h.describe.remote() for h in handles]
        ready, pending = ray.wait(refs, num_returns=len(refs), timeout=placement["start_timeout"])
        if pending:
            raise UserError(
                f"only {len(ready)} of {self.n} Ray replicas started within {placement['start_timeout']:.0f} s "
                f"(each needs num_gpus={num_gpus}, num_cpus={placement['num_cpus']}; "
                f"the cluster has {_resources(ray.cluster_resources())}); lower -M replicas or raise -M start_timeout"
            )
        try:
            described = ray.get(refs)
        except ray.exceptions.RayError as exc:
            raise UserError(f"a Ray replica died while loading the model: {_first_line(exc)}") from None
        for d in described:
            if "error" in d:
                kind, message = d["error"]
                raise UserError(message if kind == "user" else f"a Ray replica failed to load the model: {message}")
        self._described = described
        return [
            _Actor(
                i,
                h,
                ReplicaInfo(index=i, node=d["node"], host=d["host"], pid=d["pid"], device=d["info"].device, gpu_ids=d["gpu_ids"]),
            )
            for i, (h, d) in enumerate(zip(handles, described))
        ]

    # -- the backend protocol ----------------------------------------------------

    @property
    def effective_batch_size(self) -> int | str:
        return self._batch

    def generate(self, requests: Sequence[GenerateRequest]) -> Iterator[tuple[int, Any]]:
        return self._deal("generate", requests)

    def loglikelihood(self, requests: Sequence[ChoiceRequest]) -> Iterator[tuple[int, Any]]:
        if LOGLIKELIHOOD not in self.capabilities:
            raise missing_capability(self, LOGLIKELIHOOD)
        return self._deal("loglikelihood", requests)

    def _deal(self, method: str, requests: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        """Yield ``(index, result)`` as units complete on any live replica."""
        ray = self.ray
        # Few requests are spread over every replica rather than queued on one.
        unit = max(1, min(self.unit, -(-len(requests) // max(1, len(self._live())))))
        todo: deque[list[int]] = deque(
            list(range(start, min(start + unit, len(requests)))) for start in range(0, len(requests), unit)
        )
        running: dict[Any, tuple[_Actor, list[int]]] = {}
        # Requests a replica held when it died.  One of them may have killed it
        # (an input that crashes whatever runs it): each runs alone on a replica,
        # and one held by a second replica that dies fails on its own instead of
        # taking every replica with it.
        suspects: set[int] = set()
        try:
            while todo or running:
                for actor in self._live():
                    while todo and actor.queued < self.inflight and not actor.isolating:
                        suspect = todo[0][0] in suspects
                        if suspect and actor.queued:
                            break  # it waits for an idle replica
                        unit = todo.popleft()
                        ref = actor.handle.call.remote(method, [requests[i] for i in unit])
                        running[ref] = (actor, unit)
                        actor.queued += 1
                        actor.isolating = suspect
                if not running:
                    break  # nothing can run: every replica is gone
                (ref,), _ = ray.wait(list(running), num_returns=1)
                actor, unit = running.pop(ref)
                actor.queued -= 1
                actor.isolating = False
                try:
                    status, value = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:  # e.g. a request that does not unpickle
                    status, value = "error", _first_line(exc)
                except ray.exceptions.RayError as exc:  # the actor, its worker or its node died
                    why = _first_line(exc)
                    self._lose(actor, why)
                    if len(unit) == 1 and unit[0] in suspects:
                        yield unit[0], RequestFailure(f"on Ray replica {actor.index}: two Ray replicas died while "
                                                      f"running it ({why})")
                    else:  # first in line, one by one: they have waited longest
                        suspects.update(unit)
                        todo.extendleft([i] for i in reversed(unit))
                    continue
                if status == "ok":
                    for j, result in value:
                        yield unit[j], result
                elif status == "user":
                    raise UserError(value)
                elif len(unit) > 1:
                    todo.extendleft([i] for i in reversed(unit))  # pin the failure on its request
                else:
                    yield unit[0], RequestFailure(f"on Ray replica {actor.index}: {value}")
            if todo:
                raise UserError(
                    f"all {self.n} Ray replicas died ({'; '.join(a.info.lost or '' for a in self.actors)}); "
                    "completed samples are saved: continue with `evalsuite run --resume RUN_DIR`"
                )
        finally:
            for ref in running:  # the consumer stopped early: drop queued work
                try:
                    ray.cancel(ref)
                except Exception:  # noqa: BLE001 - best effort; close() kills the actors
                    pass

    def _live(self) -> list[_Actor]:
        return [a for a in self.actors if a.alive]

    def _lose(self, actor: _Actor, why: str) -> None:
        if actor.alive:
            actor.alive = False
            actor.info = actor.info.model_copy(update={"lost": why[:300]})
            self.ray.kill(actor.handle)  # an unreachable actor must not come back half-way
            self.ray_info = self.ray_info.model_copy(update={"replica_info": [a.info for a in self.actors]})

    def close(self) -> None:
        """Stop the replicas, leave the cluster, and stop a local instance."""
        ray = self.ray
        for actor in self.actors:
            if actor.alive:
                try:
                    ray.get(actor.handle.close.remote(), timeout=30)
                except Exception:  # noqa: BLE001 - it is going away either way
                    pass
                ray.kill(actor.handle)
        self.actors = []
        if ray.is_initialized():
            ray.shutdown()
        if self.head is not None:
            self.head.close()
            self.head = None


def _split_options(extra: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Placement options (validated) and the options meant for the replicas."""
    placement: dict[str, Any] = {
        "replicas": 1, "num_gpus": None, "num_cpus": 1.0, "unit": None, "inflight": 2, "start_timeout": 900.0,
    }
    parse: dict[str, Callable[[str], Any]] = {
        "replicas": int, "num_gpus": float, "num_cpus": float, "unit": int, "inflight": int, "start_timeout": float,
    }
    for key in PLACEMENT_KEYS:
        if key in extra:
            kind = "a whole number" if parse[key] is int else "a finite number"
            try:
                value = parse[key](str(extra[key]))
            except ValueError:
                raise UserError(f"-M {key} must be {kind}, got '{extra[key]}'") from None
            if not math.isfinite(value):  # inf and nan pass float() and every check below
                raise UserError(f"-M {key} must be {kind}, got '{extra[key]}'")
            if value < (0 if key in ("num_gpus", "num_cpus") else 1):
                raise UserError(f"-M {key} must be {'>= 0' if key in ('num_gpus', 'num_cpus') else '>= 1'}, got {value}")
            placement[key] = value
    inner = {k: v for k, v in extra.items() if k not in PLACEMENT_KEYS}
    return placement, inner


def _require_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast on a HOST:PORT nobody listens on (Ray itself retries for a minute)."""
    host, sep, port = address.rpartition(":")
    if address.startswith("ray://") or not sep or not port.isdigit():
        return  # "auto", a Ray Client URL: Ray checks those itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise UserError(f"cannot join the Ray cluster at {address}: {exc.strerror or exc}") from None


def _ray_installed() -> bool:
    try:
        return importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):  # a broken or blocked installation
        return False


def _resources(resources: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in sorted(resources.items()) if k in ("CPU", "GPU")) or "no resources"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
