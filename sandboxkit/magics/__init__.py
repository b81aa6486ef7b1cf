"""IPython magics: ``%load_ext sandboxkit``, then ``%sandbox_up``, ``%%sandbox_exec``...

The only part of sandboxkit that imports IPython (``import sandboxkit`` does not load this
package until IPython asks for the extension). Sandboxes a kernel starts are deleted when it
exits (atexit) or the extension is unloaded, unless started with ``--keep``.
"""

from __future__ import annotations

import atexit
from typing import Any

from .completion import sandbox_matcher
from .core import RESULT_VARIABLE, SandboxMagics

__all__ = ["RESULT_VARIABLE", "SandboxMagics", "load_ipython_extension",
           "unload_ipython_extension"]


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics (and their ``%config SandboxMagics`` defaults) in ``ipython``,
    and Tab completion of their options and sandbox names."""
    magics = SandboxMagics(shell=ipython)  # joins shell.configurables, for %config
    ipython.register_magics(magics)
    atexit.register(magics.shutdown)
    magics.matcher = sandbox_matcher(magics)  # found again by unload_ipython_extension
    ipython.Completer.custom_matchers.append(magics.matcher)


def unload_ipython_extension(ipython: Any) -> None:
    """Delete the kernel's unkept sandboxes and remove the magics (``%unload_ext``)."""
    manager = ipython.magics_manager
    magics = manager.registry.pop(SandboxMagics.__name__, None)
    if magics is None:
        return
    atexit.unregister(magics.shutdown)
    matcher = getattr(magics, "matcher", None)
    if matcher in ipython.Completer.custom_matchers:
        ipython.Completer.custom_matchers.remove(matcher)
    magics.shutdown()
    for kind, table in magics.magics.items():
        for name in table:
            manager.magics[kind].pop(name, None)
    if magics in ipython.configurables:
        ipython.configurables.remove(magics)
