"""The code-execution interface owned by the core.

Tasks that run model-written code (HumanEval, HumanEval+) talk only to this
interface; the Docker implementation lives in the top-level ``sandbox``
package and registers itself under the ``evalsuite.sandboxes`` entry point,
exactly as a third-party implementation would.

A job is one Python program.  It *passes* only if the program ran to its end
and the sandbox's own trampoline, running after the program, reported
completion: an exit code of 0 is never evidence of success, so ``sys.exit(0)``,
``os._exit(0)``, ``atexit`` hooks or a killed executor all end as ``failed``
(or ``sandbox_error`` when the infrastructure itself broke).
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from evalsuite.errors import UserError

# Where the sandbox spreads its jobs (``--sandbox-hosts`` sets it); read by
# the implementation, so tasks need not pass it along.
HOSTS_ENV = "EVALSUITE_SANDBOX_HOSTS"


class ExecStatus(str, enum.Enum):
    PASSED = "passed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    OOM = "oom"
    # Infrastructure failure: retried by the implementation, and never counted
    # as a model failure by the tasks.
    SANDBOX_ERROR = "sandbox_error"


@dataclass(frozen=True)
class ExecJob:
    """One program to execute in isolation."""

    id: str
    source: str
    timeout_s: float = 10.0
    # Name of a global the program leaves behind; its value is returned to the
    # host in ``ExecResult.value``.  Only plain builtin types (None, bool, int,
    # float, str, list, tuple, dict with str keys, set) survive the trip; any
    # other type (e.g. an object whose ``__eq__`` always returns True) makes
    # the job ``failed``, so comparisons can be done on the host.
    result_var: str | None = None


@dataclass(frozen=True)
class ExecResult:
    id: str
    status: ExecStatus
    detail: str = ""  # exception text, timeout/OOM description, infra error
    stdout: str = ""  # capped; truncation is marked in the text
    stderr: str = ""
    duration_s: float = 0.0
    value: Any = None


class SandboxUnavailable(RuntimeError):
    """The engine or image is missing; the message says how to fix it."""


class Sandbox(abc.ABC):
    """Runs untrusted Python programs; implementations must be isolated."""

    @abc.abstractmethod
    def run(self, jobs: Iterable[ExecJob]) -> Iterator[ExecResult]:
        """Execute jobs concurrently, yielding results as they complete."""

    @classmethod
    def check_hosts(cls, hosts: str) -> None:
        """Raise ``UserError`` unless ``hosts`` (``--sandbox-hosts``) is a host
        list this implementation can spread jobs over."""
        raise UserError(f"the {cls.__name__} sandbox runs on this machine only; it takes no --sandbox-hosts")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release containers and other resources."""

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
