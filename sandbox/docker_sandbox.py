"""``DockerSandbox``: the Docker implementation of ``evalsuite.sandbox.Sandbox``.

Usage::

    with DockerSandbox(workers=2) as sb:
        for result in sb.run(jobs):
            ...

Each worker thread owns one long-lived hardened container whose executor
forks a fresh, rlimited process per job (see ``executor.py``).  Infrastructure
failures are retried on a fresh container (``max_retries``); a timeout is
retried once on a fresh container so that machine load cannot flip a verdict.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterable, Iterator

import docker

from evalsuite.sandbox import ExecJob, ExecResult, ExecStatus, Sandbox

from . import container as ctr
from . import engine
from .image import IMAGE_TAG
from .pool import Worker, WorkerBroken

BASE_UID = 20000  # worker i runs as uid BASE_UID + i: RLIMIT_NPROC is per uid


class DockerSandbox(Sandbox):
    def __init__(
        self,
        *,
        workers: int | None = None,
        memory_mb: int = 512,
        cpus: float = 1.0,
        pids_limit: int = 64,
        tmpfs_mb: int = 64,
        output_bytes: int = 64 * 1024,
        min_timeout_s: float = 1.0,
        max_retries: int = 2,
        retry_timeouts: bool = True,
        image: str = IMAGE_TAG,
        base_url: str | None = None,
    ) -> None:
        """Raises ``SandboxUnavailable`` (with a fix-it message) if the engine
        or the image is missing.  Containers start lazily on the first run()."""
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.limits = ctr.Limits(memory_mb=memory_mb, cpus=cpus, pids=pids_limit,
                                 tmpfs_mb=tmpfs_mb, output_bytes=output_bytes)
        self.min_timeout_s = min_timeout_s
        self.max_retries = max_retries
        self.retry_timeouts = retry_timeouts
        self.image = image
        self.base_url = base_url
        client = engine.connect(base_url)
        engine.require_image(client, image)
        ctr.sweep_stale(client)
        client.close()
        self._pool = [Worker(engine.connect(base_url), image, self.limits, BASE_UID + i)
                      for i in range(self.workers)]
        self._run_lock = threading.Lock()
        self._closed = False

    # -- public API -------------------------------------------------------
    def run(self, jobs: Iterable[ExecJob]) -> Iterator[ExecResult]:
        """Yield one ExecResult per job, in completion order."""
        if self._closed:
            raise RuntimeError("DockerSandbox is closed")
        with self._run_lock:
            source = iter(jobs)
            take = threading.Lock()
            results: queue.Queue[ExecResult | BaseException | None] = queue.Queue()
            stop = threading.Event()

            def next_job() -> ExecJob | None:
                with take:
                    if stop.is_set():
                        return None
                    return next(source, None)

            def loop(worker: Worker) -> None:
                try:
                    while (job := next_job()) is not None:
                        results.put(self._run_one(worker, job))
                except BaseException as exc:  # surfaced in the caller's thread
                    stop.set()
                    results.put(exc)
                finally:
                    results.put(None)

            threads = [threading.Thread(target=loop, args=(w,), daemon=True,
                                        name=f"sandbox-worker-{i}")
                       for i, w in enumerate(self._pool)]
            for t in threads:
                t.start()
            try:
                running = len(threads)
                while running:
                    item = results.get()
                    if item is None:
                        running -= 1
                    elif isinstance(item, BaseException):
                        raise item
                    else:
                        yield item
            finally:
                stop.set()  # consumer stopped early or crashed: drain quickly
                for t in threads:
                    t.join()

    def close(self) -> None:
        self._closed = True
        for w in self._pool:
            w.stop()
            try:
                w.client.close()
            except Exception:
                pass

    def __del__(self) -> None:
        try:
            if not self._closed:
                self.close()
        except Exception:
            pass

    # -- internals --------------------------------------------------------
    def _run_one(self, worker: Worker, job: ExecJob) -> ExecResult:
        timeout_s = max(float(job.timeout_s), self.min_timeout_s)
        errors: list[str] = []
        timeouts = 0
        while True:
            try:
                if not worker.alive:
                    worker.stop()
                    worker.start()
                attempt = worker.execute(job, timeout_s)
            except WorkerBroken as exc:
                worker.stop()
                if exc.oom:
                    return ExecResult(job.id, ExecStatus.OOM,
                                      "container killed by its memory limit")
                errors.append(str(exc))
            except (docker.errors.DockerException, OSError, ConnectionError,
                    Exception) as exc:  # container failed to start
                worker.stop()
                errors.append(f"container start failed: {exc}")
            else:
                if attempt.replace_worker:
                    worker.stop()  # restarted before its next job
                result = attempt.result
                if result.status is ExecStatus.SANDBOX_ERROR:
                    errors.append(result.detail)
                elif (result.status is ExecStatus.TIMED_OUT and self.retry_timeouts
                      and timeouts == 0):
                    timeouts += 1  # once more on a fresh container
                    continue
                else:
                    return result
            if len(errors) > self.max_retries:
                return ExecResult(job.id, ExecStatus.SANDBOX_ERROR,
                                  f"gave up after {len(errors)} attempts: {errors[-1][:500]}")
