"""Image references, the image table and the failures the kubelet reports for them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sandboxkit.devcluster.images import (
    ENV_VAR,
    ImageTable,
    InvalidReference,
    normalize,
    parse_reference,
)

SEED = "nikolaik/python-nodejs:python3.11-nodejs20-bullseye"


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36"),
        (SEED, f"docker.io/{SEED}"),
        ("ghcr.io/acme/tool:v1", "ghcr.io/acme/tool:v1"),
        ("localhost:5000/app", "localhost:5000/app:latest"),
        ("index.docker.io/library/alpine:3.19", "docker.io/library/alpine:3.19"),
        ("alpine@sha256:" + "a" * 64, "docker.io/library/alpine@sha256:" + "a" * 64),
    ],
)
def test_normalize(image: str, expected: str) -> None:
    assert normalize(image) == expected


@pytest.mark.parametrize("image", ["busybox:", "bad image", "-x", "a//b", ":tag", ""])
def test_malformed_references(image: str) -> None:
    with pytest.raises(InvalidReference, match="invalid reference format"):
        parse_reference(image)


def test_uppercase_repository_has_distribution_wording() -> None:
    with pytest.raises(InvalidReference) as exc:
        parse_reference("Busybox")
    assert str(exc.value) == (
        "invalid reference format: repository name (library/Busybox) must be lowercase"
    )


@pytest.mark.parametrize(
    "image",
    [SEED, "busybox", "busybox:1.36", "python:3.11", "python:3.11-slim", "alpine",
     "alpine:3.19", "ubuntu:22.04", "debian:bookworm-slim", "bash:5.2",
     "docker.io/library/busybox:latest"],
)
def test_default_images_resolve(image: str) -> None:
    assert ImageTable().resolve(image) is None


def test_unknown_image_fails_like_containerd() -> None:
    failure = ImageTable().resolve("doesnotexist/image")
    assert failure is not None
    assert failure.reason == "ErrImagePull"
    ref = "docker.io/doesnotexist/image:latest"
    assert failure.message == (
        f'failed to pull and unpack image "{ref}": failed to resolve reference "{ref}": '
        f"{ref}: not found"
    )
    assert ImageTable().resolve("python:2.7") is not None


def test_invalid_image_name_message() -> None:
    failure = ImageTable().resolve("busybox:")
    assert failure is not None
    assert failure.reason == "InvalidImageName"
    assert failure.message == (
        'Failed to apply default image tag "busybox:": couldn\'t parse image name '
        '"busybox:": invalid reference format'
    )


def test_extra_patterns_from_env_and_files(tmp_path: Path) -> None:
    table = ImageTable.load(env={ENV_VAR: "ghcr.io/acme/*, myimage:1.*"})
    assert table.resolve("ghcr.io/acme/tool:v2") is None
    assert table.resolve("myimage:1.4") is None
    assert table.resolve("myimage:2.0") is not None
    assert table.resolve("busybox") is None  # defaults kept

    only = tmp_path / "images.json"
    only.write_text(json.dumps({"images": ["custom/only"], "replace_defaults": True}))
    table = ImageTable.load(env={ENV_VAR: str(only)})
    assert table.resolve("custom/only:any") is None
    assert table.resolve("busybox") is not None

    listed = tmp_path / "images.yaml"
    listed.write_text("- quay.io/team/*\n")
    assert ImageTable.load(listed, env={}).resolve("quay.io/team/x:1") is None


def test_image_id_and_size_are_stable() -> None:
    table = ImageTable()
    image_id = table.image_id("busybox")
    assert image_id.startswith("docker.io/library/busybox@sha256:")
    assert len(image_id.rsplit(":", 1)[1]) == 64
    assert image_id == table.image_id("docker.io/library/busybox:latest")
    assert table.size("busybox") > 0
