"""Build and run the serving image with podman: versioned Bento, Debian base image, serving requirements only.

    python -m deploy.container build [--image NAME] [--reuse]   # Bento + image, prints the image reference
    python -m deploy.container run [--image REF] [--port N]      # podman run --network host, SIGTERM stops it
    python -m deploy.container base                               # the base image alone (cached)

No container registry is reachable here, so the base image is Debian bookworm from debootstrap
(Python 3.11, as the project), imported once and reused while it exists.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "localhost/aifx-reversal-engine"
BASE_IMAGE = "localhost/aifx-base:bookworm"
BENTO_NAME = "aifx-reversal-engine"
CONFIG_IN_IMAGE = "/home/bentoml/bento/src/configuration.yaml"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# crun fails on this host kind's hybrid cgroups; runc with cgroupfs works (docs/deployment.md).
PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs"]
# Limits can only be lowered in this sandbox, and podman's defaults are above the host's.
ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]
BENTOML = str(Path(sys.executable).with_name("bentoml"))


def log(message: str) -> None:
    """Progress on stderr (stdout carries the result)."""
    print(f"container: {message}", file=sys.stderr, flush=True)


def git(*args: str) -> str:
    """A git command's output in this tree."""
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True).stdout.strip()


def bento_version() -> str:
    """`<project version>-<short commit>`, `-dirty` when tracked files differ from the commit."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    dirty = subprocess.run(["git", "-C", str(ROOT), "diff", "--quiet", "HEAD"]).returncode != 0
    return f"{project}-{git('rev-parse', '--short=10', 'HEAD')}" + ("-dirty" if dirty else "")


def model_labels() -> dict[str, str]:
    """`model.<name>` -> the model version packed, for every configured (version, stage) in the store."""
    import bentoml
    from bentoml.exceptions import NotFound

    from aifx.settings import get_settings
    from aifx.versions import model_name

    labels = {}
    for version in get_settings().versions:
        for stage in (1, 2):
            try:
                model = bentoml.models.get(model_name(version, stage))
            except NotFound:
                continue
            labels[f"model.{model.tag.name}"] = str(model.tag.version)
    return labels


def image_exists(ref: str) -> bool:
    """Whether podman's local storage holds this image."""
    return subprocess.run([*PODMAN, "image", "exists", ref]).returncode == 0


def ensure_base(ref: str = BASE_IMAGE) -> None:
    """Debian bookworm with python3 and venv, from debootstrap, unless the image already exists (45 s once)."""
    if image_exists(ref):
        return
    log(f"making the base image {ref} with debootstrap")
    with tempfile.TemporaryDirectory(prefix="aifx-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        packages = "--include=python3,python3-venv,ca-certificates"
        subprocess.run(["debootstrap", "--variant=minbase", packages, "bookworm", str(rootfs)], check=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run([*PODMAN, "import", "-", ref], stdin=tar.stdout, check=True, stdout=subprocess.DEVNULL)
        if tar.wait() != 0:
            raise SystemExit("tar of the base rootfs failed")


def build_bento(version: str, labels: dict[str, str], work: Path) -> str:
    """`bentoml build` with this version, the model labels and BENTOML_CONFIG in the Bento's envs -> its tag."""
    import yaml

    spec = yaml.safe_load((ROOT / "bentofile.yaml").read_text())
    envs = [e for e in spec.get("envs", []) if e["name"] != "BENTOML_CONFIG"]
    spec["envs"] = [*envs, {"name": "BENTOML_CONFIG", "value": CONFIG_IN_IMAGE}]
    bentofile = work / "bentofile.yaml"  # outside the tree: `bentoml serve .` keeps reading bentofile.yaml as is
    bentofile.write_text(yaml.safe_dump(spec, sort_keys=False))
    label_args = [a for key, value in labels.items() for a in ("--label", f"{key}={value}")]
    cmd = [BENTOML, "build", str(ROOT), "-f", str(bentofile), "--version", version, "-o", "tag", *label_args]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENTOML_DO_NOT_TRACK": "True"}
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"bentoml build failed:\n{out.stdout[-3000:]}{out.stderr[-3000:]}")
    tag = out.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    return tag


def bento_envs(bento_dir: Path) -> list[tuple[str, str]]:
    """The Bento's envs as (name, value), from its bento.yaml."""
    import yaml

    info = yaml.safe_load((bento_dir / "bento.yaml").read_text())
    return [(e["name"], str(e["value"])) for e in info.get("envs") or [] if e.get("value") is not None]


def make_context(tag: str, work: Path) -> Path:
    """The build context: the exported Bento (with its models), the serving requirements, the CA bundle."""
    from deploy.serving_requirements import serving_lines

    ctx = work / "context"
    ctx.mkdir()
    archive = work / "bento.tar"
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "True"}
    subprocess.run([BENTOML, "export", tag, str(archive)], check=True, env=env, stdout=subprocess.DEVNULL)
    with tarfile.open(archive) as tar:
        tar.extractall(ctx / "bento", filter="data")
    (ctx / "requirements-serving.txt").write_text("".join(f"{line}\n" for line in serving_lines()))
    shutil.copy(CA_BUNDLE, ctx / "ca-certificates.crt")
    envs = "\n".join(f'ENV {name}="{value}"' for name, value in bento_envs(ctx / "bento"))
    containerfile = (ROOT / "deploy" / "Containerfile").read_text().replace("#ENVS#", envs)
    (ctx / "Containerfile").write_text(containerfile)
    return ctx


def build(image: str = IMAGE, reuse: bool = False) -> str:
    """Bento and image; with reuse, an image already built from this (clean) commit is kept -> its reference."""
    version = bento_version()
    ref = f"{image}:{version}"
    if reuse and not version.endswith("-dirty") and image_exists(ref):
        log(f"{ref} exists: reused")
        return ref
    ensure_base()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="aifx-image-") as tmp:
        work = Path(tmp)
        labels = model_labels()
        tag = build_bento(version, labels, work)
        log(f"built Bento {tag}")
        ctx = make_context(tag, work)
        image_labels = {"org.opencontainers.image.version": version, "aifx.bento": tag, **labels}
        label_args = [a for k, v in image_labels.items() for a in ("--label", f"{k}={v}")]
        subprocess.run(
            [*PODMAN, "build", "--isolation", "chroot", "--network", "host", "--layers", *ULIMITS, *label_args]
            + ["--build-arg", f"BASE={BASE_IMAGE}", "-t", ref, "-t", f"{image}:latest", "-f", "Containerfile", "."],
            cwd=ctx,
            check=True,
            stdout=sys.stderr,
        )
    log(f"built {ref} in {time.monotonic() - started:.0f} s")
    return ref


def run_args(ref: str, port: int, env: dict[str, str], name: str | None = None) -> list[str]:
    """The podman run command line: host network (BENTOML_PORT picks the port), lowered limits."""
    names = ["--name", name] if name else []
    env_args = [a for k, v in env.items() for a in ("-e", f"{k}={v}")]
    return [*PODMAN, "run", "--rm", *names, "--network", "host", *ULIMITS, "-e", f"BENTOML_PORT={port}", *env_args, ref]


def main(argv: list[str] | None = None) -> None:
    """Parse the command and run it."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="Bento and image")
    b.add_argument("--image", default=IMAGE)
    b.add_argument("--reuse", action="store_true", help="keep an image built from this commit")
    r = sub.add_parser("run", help="run the image in the foreground")
    r.add_argument("--image", default=f"{IMAGE}:latest")
    r.add_argument("--port", type=int, default=3000)
    sub.add_parser("base", help="the base image only")
    args = parser.parse_args(argv)
    if args.command == "base":
        ensure_base()
    elif args.command == "build":
        print(build(args.image, args.reuse))
    else:
        passed = ("ENVIRONMENT", "LOG_LEVEL", "AIFX_LOG_FORMAT")
        env = {k: v for k, v in os.environ.items() if k.startswith("AIFX_") or k in passed}
        os.execvp(PODMAN[0], run_args(args.image, args.port, env))


if __name__ == "__main__":
    main()
