"""Pure helpers that turn magic arguments into sandbox settings (no IPython needed).

Kept apart from the magics so the parsing rules (``--env K=V``, ``--cpu REQUEST:LIMIT``,
where a line command starts) are unit-tested without a shell or a cluster, and every
mistake becomes a :class:`ConfigError` naming the flag, before any API call.
"""

from __future__ import annotations

import keyword

from ..config import SandboxConfig, parse_env, quantity_value, validate_quantity
from ..errors import ConfigError

__all__ = ["parse_env", "resource_overrides", "split_line_command", "unquote",
           "variable_name"]

_EXAMPLES = {"cpu": ("500m", "1", "250m:2"), "memory": ("512Mi", "2Gi", "512Mi:4Gi")}


def resource_overrides(
    resource: str, value: str | None, base: SandboxConfig,
) -> dict[str, str]:
    """``--cpu``/``--memory`` as request and limit overrides.

    ``LIMIT`` sets the limit and keeps the configured request, lowered to the limit when it
    is above it (Kubernetes refuses a request above its limit); ``REQUEST:LIMIT`` sets both.
    """
    if value is None:
        return {}
    one, two, example = _EXAMPLES[resource]
    flag = f"--{resource}"
    request_text, sep, limit = value.partition(":")
    if not sep:
        request_text, limit = "", value
    validate_quantity(flag, limit, f"{flag} {two}")
    if request_text:
        validate_quantity(flag, request_text, f"{flag} {example}")
        request = request_text
    else:
        request = getattr(base.resources, f"{resource}_request")
        if quantity_value(request) > quantity_value(limit):
            request = limit
    if quantity_value(request) > quantity_value(limit):
        raise ConfigError(flag, value, "the request is above the limit", f"{flag} {example}")
    if quantity_value(limit) <= 0:
        raise ConfigError(flag, value, "must be positive", f"{flag} {one}")
    return {f"{resource}_request": request, f"{resource}_limit": limit}


def split_line_command(line: str) -> tuple[str, str]:
    """``(options, command)`` of a line magic that runs a shell command.

    Everything after the first standalone ``--`` is the command, verbatim (the shell will
    parse it, so it is never re-tokenized here); without ``--`` the whole line is the command
    unless it starts with an option, which is then a mistake.
    """
    stripped = line.strip()
    words = stripped.split()
    if "--" in words:
        head, _, command = f" {stripped} ".partition(" -- ")
        return head.strip(), command.strip()
    if stripped.startswith("-"):
        raise ConfigError("command", line, "put -- between the options and the command",
                          "%sandbox_exec --check -- make test")
    return "", stripped


def variable_name(flag: str, name: str | None) -> str | None:
    """``name`` if it can be a Python variable (for ``--out``/``--err``), else ConfigError."""
    if name is not None and (not name.isidentifier() or keyword.iskeyword(name)):
        raise ConfigError(flag, name, "not a Python variable name", f"{flag} result")
    return name


def unquote(path: str) -> str:
    """A path argument without its surrounding quotes: IPython's magic_arguments splits
    ``'/tmp/a dir/x'`` as one word but keeps the quotes (as ``%%writefile`` also strips)."""
    if len(path) >= 2 and path[0] == path[-1] and path[0] in "'\"":
        return path[1:-1]
    return path
