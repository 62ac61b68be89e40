"""Serve ONE service of the Bento, with its dependencies at given URLs (one Kubernetes Deployment each).

`bentoml serve` runs the entry service and starts both stage services as local processes. To scale
the stages separately, run each service in its own Deployment:

    python deploy/serve_one.py BENTO --service ReversalDetector --port 3000
    python deploy/serve_one.py BENTO --service DirectionClassifier --port 3000
    python deploy/serve_one.py BENTO --service ReversalEngine --port 3000 \
        --depends ReversalDetector=http://aifx-detector:3000 \
        --depends DirectionClassifier=http://aifx-direction:3000

BENTO is a Bento tag (aifx-reversal-engine:latest), a Bento directory or the source directory.
This calls BentoML's own server entry point `_bentoml_impl.server.serve_http` (the function behind
`bentoml serve`) with `service_name` and `dependency_map`; that module is internal to BentoML, so
this script is pinned to the BentoML version in requirements.lock (1.4.40).
"""

from __future__ import annotations

import argparse
import os

# Seconds an idle keep-alive connection stays open. uvicorn's default (5 s) equals the idle expiry of
# httpx clients (aifx_client included), so the server closed connections just as clients reused
# them: the client got a reset for a request the server never read (a POST that must not be
# retried blindly). Keep it above every client's and proxy's idle timeout (httpx 5 s, aiohttp 15 s,
# nginx upstream / AWS ALB 60 s).
KEEP_ALIVE_S = 75


def parse_depends(values: list[str]) -> dict[str, str]:
    """NAME=URL pairs -> {NAME: URL}."""
    out = {}
    for value in values:
        name, sep, url = value.partition("=")
        if not sep or not url.startswith(("http://", "https://")):
            raise SystemExit(f"--depends {value!r}: use NAME=http://host:port")
        out[name] = url.rstrip("/")
    return out


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments and serve one service until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bento", help="Bento tag, Bento directory or source directory")
    parser.add_argument("--service", required=True, help="ReversalEngine, ReversalDetector or DirectionClassifier")
    parser.add_argument("--depends", action="append", default=[], metavar="NAME=URL", help="a dependency's URL")
    parser.add_argument("--host", default=os.environ.get("BENTOML_HOST", "0.0.0.0"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("BENTOML_PORT", "3000")))
    parser.add_argument("--working-dir", default=None, help="source directory when BENTO is one")
    parser.add_argument("--timeout-keep-alive", type=int, default=KEEP_ALIVE_S, help="idle keep-alive seconds")
    args = parser.parse_args(argv)

    from _bentoml_impl.loader import load
    from _bentoml_impl.server import serve_http

    entry = load(args.bento, args.working_dir)
    service = entry if args.service == entry.name else entry.find_dependent_by_name(args.service)
    wanted = {dep.on.name for dep in service.dependencies.values() if dep.on is not None}
    depends = parse_depends(args.depends)
    missing = sorted(wanted - set(depends))
    if missing:
        raise SystemExit(f"{args.service} depends on {', '.join(missing)}: pass --depends NAME=URL for each")
    service.inject_config()
    serve_http(
        args.bento,
        working_dir=args.working_dir,
        host=args.host,
        port=args.port,
        service_name=args.service,
        dependency_map=depends,
        timeout_keep_alive=args.timeout_keep_alive,
    )


if __name__ == "__main__":
    main()
