"""The sandboxes one kernel started or attached: by name, which one is current, which stay.

Why a registry of its own: the magics name sandboxes (``%sandbox_exec web``) and default to
the last one started, and whatever a kernel started must go when the kernel does (atexit,
``%unload_ext``) unless the user said ``--keep``. Plain Python, no IPython.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from ..backends.base import Sandbox

__all__ = ["SandboxRegistry", "UnknownSandbox"]


class UnknownSandbox(LookupError):
    """No sandbox of that name in this kernel (or none at all); the message says what to do."""


class SandboxRegistry:
    """Named sandboxes of one kernel; the most recently added (still present) is current."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sandboxes: dict[str, Sandbox] = {}
        self._kept: set[str] = set()

    def __len__(self) -> int:
        return len(self._sandboxes)

    def names(self) -> list[str]:
        with self._lock:
            return list(self._sandboxes)

    def __contains__(self, name: object) -> bool:
        return name in self._sandboxes

    def add(self, sandbox: Sandbox, *, keep: bool = False, name: str | None = None) -> None:
        """Track ``sandbox`` as ``name`` (default: its own) and make it current; ``keep``
        spares it at kernel exit. A name of its own is what the user typed for a sandbox
        claimed from a warm pool, whose Job name the pool chose."""
        name = name or sandbox.name
        with self._lock:
            self._sandboxes.pop(name, None)  # re-adding makes it current again
            self._sandboxes[name] = sandbox
            if keep:
                self._kept.add(name)

    def key(self, name: str | None = None) -> str:
        """The name ``name`` (None: the current sandbox) is registered under; UnknownSandbox
        as :meth:`get` when there is none."""
        sandbox = self.get(name)
        with self._lock:
            return next(key for key, each in self._sandboxes.items() if each is sandbox)

    def get(self, name: str | None = None) -> Sandbox:
        """The sandbox called ``name``, or the current one; UnknownSandbox otherwise."""
        with self._lock:
            if name is None:
                if not self._sandboxes:
                    raise UnknownSandbox(
                        "no sandbox in this kernel: start one with %sandbox_up "
                        "(or take one over with %sandbox_attach NAME)")
                return next(reversed(self._sandboxes.values()))
            if name not in self._sandboxes:
                known = ", ".join(self._sandboxes) or "none"
                raise UnknownSandbox(
                    f"no sandbox named {name!r} in this kernel (known: {known}); "
                    f"%sandbox_attach {name} takes over one started elsewhere")
            return self._sandboxes[name]

    def remove(self, name: str) -> Sandbox:
        with self._lock:
            self._kept.discard(name)
            return self._sandboxes.pop(name)

    def kept(self) -> list[Sandbox]:
        with self._lock:
            return [s for name, s in self._sandboxes.items() if name in self._kept]

    def tear_down(self, names: list[str], *, wait: bool,
                  on_error: Callable[[str, Exception], None]) -> list[str]:
        """Tear down ``names`` in parallel (their grace periods overlap); return those gone.

        A failure is reported through ``on_error`` and the sandbox stays registered, so the
        user can retry.
        """
        for name in names:
            self.get(name)  # UnknownSandbox before anything is deleted

        def one(name: str) -> str | None:
            sandbox = self.get(name)
            try:
                sandbox.teardown(wait=wait)
            except Exception as exc:
                on_error(name, exc)
                return None
            self.remove(name)
            return name

        if not wait:
            # One delete request each: nothing to overlap. And at interpreter exit (atexit)
            # a thread pool refuses new work, so kernel exit must not use one.
            return [name for name in map(one, names) if name is not None]
        if not names:
            return []
        with ThreadPoolExecutor(max_workers=min(8, len(names))) as pool:
            return [name for name in pool.map(one, names) if name is not None]

    def tear_down_unkept(self, on_error: Callable[[str, Exception], None]) -> list[str]:
        """What kernel exit does: every sandbox not kept, without waiting for it to go."""
        with self._lock:
            names = [name for name in self._sandboxes if name not in self._kept]
        return self.tear_down(names, wait=False, on_error=on_error)
