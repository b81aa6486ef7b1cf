"""Image references and the table of images the devcluster's node can "pull".

The devcluster's containers run on the host filesystem, so pulling is a lookup: an image
is available when its reference matches an entry of an :class:`ImageTable`, and every
available image means "the host's filesystem". What must stay faithful is the failure
side, because the troubleshooting notebook and ``sandboxkit.diagnostics`` read it: a
malformed reference fails the way the kubelet's ``applyDefaultImageTag`` fails
(``InvalidImageName``), and an unknown one fails the way containerd reports a missing
image (``ErrImagePull``), naming the *normalized* reference (``docker.io/library/x:latest``).

Table entries are patterns over normalized references: ``busybox`` matches every tag of
``docker.io/library/busybox``; ``python:3.11*`` only tags starting with ``3.11``;
``ghcr.io/acme/*`` every repository under that prefix (``fnmatch`` syntax). Extra entries
come from ``SANDBOXKIT_DEVCLUSTER_IMAGES``: either comma-separated patterns, or the path
of a JSON/YAML file holding a list of patterns or ``{"images": [...], "replace_defaults":
bool}``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "DEFAULT_ENTRIES",
    "ENV_VAR",
    "ImageEntry",
    "ImageReference",
    "ImageTable",
    "InvalidReference",
    "PullFailure",
    "normalize",
    "parse_reference",
]

ENV_VAR = "SANDBOXKIT_DEVCLUSTER_IMAGES"

DEFAULT_DOMAIN = "docker.io"
OFFICIAL_PREFIX = "library/"

# The grammar of github.com/distribution/reference, which both the kubelet and containerd
# use to parse image names.
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(
    rf"^(?P<name>(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$"
)
_HEX64 = re.compile(r"^[a-f0-9]{64}$")
_NAME_MAX = 255


class InvalidReference(ValueError):
    """A reference the distribution grammar rejects; ``str()`` is its error text."""


@dataclass(frozen=True)
class ImageReference:
    """A parsed, normalized image reference."""

    domain: str
    path: str
    tag: str | None
    digest: str | None

    @property
    def repository(self) -> str:
        """``docker.io/library/busybox``: the name without tag or digest."""
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        text = self.repository
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


@dataclass(frozen=True)
class PullFailure:
    """Why an image cannot be used: a kubelet waiting reason and the runtime's message."""

    reason: str  # "InvalidImageName" | "ErrImagePull"
    message: str


def _split_domain(name: str) -> tuple[str, str]:
    """Docker's rule: the first component is a registry when it looks like a host."""
    first, sep, rest = name.partition("/")
    if sep and (any(c in first for c in ".:") or first == "localhost" or first != first.lower()):
        domain, path = first, rest
    else:
        domain, path = DEFAULT_DOMAIN, name
    if domain == "index.docker.io":
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_PREFIX + path
    return domain, path


def parse_reference(image: str) -> ImageReference:
    """Parse and normalize ``image`` as ``ParseNormalizedNamed`` does.

    Raises InvalidReference with distribution's wording, which the kubelet embeds in its
    ``InvalidImageName`` message.
    """
    if _HEX64.match(image):
        raise InvalidReference(
            f"invalid repository name ({image}), cannot specify 64-byte hexadecimal strings"
        )
    name_part = image.split("@", 1)[0]
    tag_sep = name_part.rfind(":")
    repo_part = name_part[:tag_sep] if tag_sep > name_part.rfind("/") else name_part
    domain, remainder = _split_domain(repo_part)
    if remainder != remainder.lower():
        raise InvalidReference(
            f"invalid reference format: repository name ({remainder}) must be lowercase"
        )
    match = _REFERENCE.match(image)
    if not match:
        raise InvalidReference("invalid reference format")
    if len(match.group("name")) > _NAME_MAX:
        raise InvalidReference(f"repository name must not be more than {_NAME_MAX} characters")
    return ImageReference(domain, remainder, match.group("tag"), match.group("digest"))


def normalize(image: str) -> str:
    """``busybox`` -> ``docker.io/library/busybox:latest`` (the containerd form)."""
    ref = parse_reference(image)
    if ref.tag is None and ref.digest is None:
        ref = ImageReference(ref.domain, ref.path, "latest", None)
    return str(ref)


@dataclass(frozen=True)
class ImageEntry:
    """One available image pattern and the size the Pulled event reports for it."""

    pattern: str
    size_bytes: int = 0

    def matches(self, ref: ImageReference) -> bool:
        repo_pattern, tag_pattern = _split_pattern(self.pattern)
        if not fnmatch.fnmatchcase(ref.repository, repo_pattern):
            return False
        if ref.tag is None:
            # a digest-only reference pins content, which any tag of the repository may have
            return ref.digest is not None or fnmatch.fnmatchcase("latest", tag_pattern)
        return fnmatch.fnmatchcase(ref.tag, tag_pattern)


def _split_pattern(pattern: str) -> tuple[str, str]:
    """``python:3.11*`` -> (``docker.io/library/python``, ``3.11*``); no tag means any tag."""
    colon = pattern.rfind(":")
    if colon > pattern.rfind("/"):
        repo, tag = pattern[:colon], pattern[colon + 1 :]
    else:
        repo, tag = pattern, "*"
    domain, path = _split_domain(repo)
    return f"{domain}/{path}", tag


_MB = 1024 * 1024

# Sizes approximate the compressed linux/amd64 images, so Pulled events read plausibly.
DEFAULT_ENTRIES: tuple[ImageEntry, ...] = (
    ImageEntry("nikolaik/python-nodejs:python3.1*", 412 * _MB),
    ImageEntry("nikolaik/python-nodejs:latest", 412 * _MB),
    ImageEntry("busybox:latest", 2 * _MB),
    ImageEntry("busybox:stable*", 2 * _MB),
    ImageEntry("busybox:1.3*", 2 * _MB),
    ImageEntry("busybox:musl", 2 * _MB),
    ImageEntry("busybox:glibc", 2 * _MB),
    ImageEntry("busybox:uclibc", 2 * _MB),
    ImageEntry("python:3.11", 392 * _MB),
    ImageEntry("python:3.11-*", 392 * _MB),
    ImageEntry("python:3.11.*", 392 * _MB),
    ImageEntry("alpine:latest", 3 * _MB),
    ImageEntry("alpine:3.*", 3 * _MB),
    ImageEntry("alpine:edge", 3 * _MB),
    ImageEntry("ubuntu:latest", 29 * _MB),
    ImageEntry("ubuntu:2?.04", 29 * _MB),
    ImageEntry("ubuntu:focal", 27 * _MB),
    ImageEntry("ubuntu:jammy", 29 * _MB),
    ImageEntry("ubuntu:noble", 29 * _MB),
    ImageEntry("debian:latest", 48 * _MB),
    ImageEntry("debian:bookworm*", 48 * _MB),
    ImageEntry("debian:bullseye*", 53 * _MB),
    ImageEntry("debian:stable*", 48 * _MB),
    ImageEntry("debian:1[12]*", 48 * _MB),
    ImageEntry("bash:latest", 6 * _MB),
    ImageEntry("bash:[45]*", 6 * _MB),
)


def _fake_digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


@dataclass
class ImageTable:
    """The images this node can run; everything else fails to pull."""

    entries: list[ImageEntry] = field(default_factory=lambda: list(DEFAULT_ENTRIES))

    @classmethod
    def load(cls, path: Path | None = None, env: Mapping[str, str] | None = None) -> ImageTable:
        """Defaults plus the entries of ``path`` and of ``SANDBOXKIT_DEVCLUSTER_IMAGES``."""
        table = cls()
        env = os.environ if env is None else env
        sources: list[Path | str] = [path] if path else []
        value = env.get(ENV_VAR, "").strip()
        if value:
            candidate = Path(value).expanduser()
            sources.append(candidate if candidate.is_file() else value)
        for source in sources:
            if isinstance(source, Path):
                patterns, replace = _read_file(source)
            else:
                patterns, replace = [p.strip() for p in source.split(",") if p.strip()], False
            if replace:
                table.entries = []
            table.entries.extend(ImageEntry(p) for p in patterns)
        return table

    def add(self, pattern: str, size_bytes: int = 0) -> None:
        self.entries.append(ImageEntry(pattern, size_bytes))

    def resolve(self, image: str) -> PullFailure | None:
        """None when the image is available; otherwise the failure the kubelet reports."""
        try:
            ref = parse_reference(image)
        except InvalidReference as exc:
            return PullFailure(
                "InvalidImageName",
                f'Failed to apply default image tag "{image}": '
                f'couldn\'t parse image name "{image}": {exc}',
            )
        if self._entry(ref) is not None:
            return None
        full = normalize(image)
        return PullFailure(
            "ErrImagePull",
            f'failed to pull and unpack image "{full}": failed to resolve reference '
            f'"{full}": {full}: not found',
        )

    def _entry(self, ref: ImageReference) -> ImageEntry | None:
        return next((e for e in self.entries if e.matches(ref)), None)

    def size(self, image: str) -> int:
        """Bytes reported by the Pulled event (stable per image when not configured)."""
        entry = self._entry(parse_reference(image))
        if entry is not None and entry.size_bytes:
            return entry.size_bytes
        return 1 * _MB + int(hashlib.sha256(normalize(image).encode()).hexdigest()[:6], 16) * 16

    @staticmethod
    def image_id(image: str) -> str:
        """containerStatuses[].imageID: ``docker.io/library/busybox@sha256:...``."""
        ref = parse_reference(image)
        digest = ref.digest or _fake_digest(normalize(image))
        return f"{ref.repository}@{digest}"


def _read_file(path: Path) -> tuple[list[str], bool]:
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        import yaml  # only needed for YAML tables

        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    if isinstance(data, dict):
        images, replace = data.get("images", []), bool(data.get("replace_defaults", False))
    else:
        images, replace = data or [], False
    if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
        raise ValueError(f"{path}: expected a list of image patterns")
    return images, replace
