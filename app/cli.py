"""The command line: `python -m app [serve|build|status|ask]`. Thin: parse, call the core, print.

Errors from the core become one line on stderr and exit status 1; no traceback reaches the user.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from .errors import VerbatimError
from .settings import Settings


def _folders(default: object) -> argparse.ArgumentParser:
    """--corpus and --index, taken before the subcommand or after it."""
    folders = argparse.ArgumentParser(add_help=False, argument_default=default)
    folders.add_argument("--corpus", help="documents folder (default: corpus/, or $VERBATIM_CORPUS)")
    folders.add_argument("--index", help="index folder (default: index/, or $VERBATIM_INDEX)")
    return folders


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m app", parents=[_folders(None)],
                                  description="Answers questions about your documents with exact quotes.")
    # A subcommand's own defaults would overwrite folders given before it (`--corpus X build`): it has none.
    common = _folders(argparse.SUPPRESS)
    sub = top.add_subparsers(dest="command")
    serve = sub.add_parser("serve", parents=[common], help="the chat page in the browser (the default)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=7860)
    serve.add_argument("--no-build", action="store_true", help="serve the index as it is")
    serve.add_argument("--allow-upload", action="store_true",
                       help="let visitors add documents from the page even when --host is not 127.0.0.1")
    b = sub.add_parser("build", parents=[common], help="(re)build the index, incrementally")
    b.add_argument("--full", action="store_true", help="re-embed everything")
    b.add_argument("--json", action="store_true", help="print the counts as one JSON object")
    b.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="embed on this machine (default) or on a Ray cluster (needs `pip install verbatim[ray]`)")
    b.add_argument("--ray-address", metavar="ADDR",
                   help="with --engine ray: `auto` (the cluster this machine belongs to) or ray://HOST:PORT; "
                        "default: start Ray on this machine")
    st = sub.add_parser("status", parents=[common], help="what is indexed and whether it is stale")
    st.add_argument("--json", action="store_true")
    ask = sub.add_parser("ask", parents=[common], help="one answer on the command line")
    ask.add_argument("question")
    ask.add_argument("--history", nargs="*", default=[], metavar="Q", help="earlier questions of the conversation")
    ask.add_argument("--json", action="store_true", help="print the answer JSON")
    ask.add_argument("--no-build", action="store_true", help="do not update the index first")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = Settings.from_env(args.corpus, args.index)
    command = args.command or "serve"
    try:
        if command == "build":
            return _build(settings, args)
        if command == "status":
            return _status(settings, args)
        if command == "ask":
            return _ask(settings, args)
        return _serve(settings, args)
    except VerbatimError as exc:
        print(f"verbatim: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("verbatim: interrupted; the last complete index is still in place", file=sys.stderr)
        return 130


def _build(settings: Settings, args) -> int:
    from .qa import QA

    qa = QA(settings)
    report = _build_on_ray(settings, args) if args.engine == "ray" else qa.build(full=args.full)
    qa.prepare()
    if args.json:
        print(json.dumps(report.to_json(), ensure_ascii=False))
        return 0
    print(f"{report.added} added, {report.changed} changed, {report.removed} removed, {report.unchanged} unchanged, "
          f"{report.skipped} skipped; {report.chunks} passages ({report.embedded_chunks} embedded) "
          f"in {report.seconds:.1f}s")
    if report.engine == "ray" and report.rebuilt:
        print(f"  on Ray: {report.workers} worker{'s' * (report.workers != 1)}; "
              + ", ".join(f"{stage} {seconds:.1f}s" for stage, seconds in report.stages.items()))
    for skipped in report.skipped_files:
        print(f"  skipped {skipped.path}: {skipped.reason}")
    return 0


def _build_on_ray(settings: Settings, args):
    try:
        from .ray_build import build_on_ray, model_on
    except ImportError as exc:
        raise VerbatimError(f"--engine ray needs Ray ({exc.name} is missing); "
                            "install it with `pip install 'verbatim[ray]'`") from None
    return build_on_ray(settings, model_on, address=args.ray_address, full=args.full)


def _status(settings: Settings, args) -> int:
    from .status import index_status

    status = index_status(settings)
    if args.json:
        print(json.dumps(status, ensure_ascii=False))
    else:
        print(status["summary"])
    return 0


def _ask(settings: Settings, args) -> int:
    from .qa import QA

    qa = QA(settings)
    if not args.no_build:
        qa.build()
    answer = qa.ask(args.question, args.history)
    if args.json:
        print(json.dumps(answer.to_json(), ensure_ascii=False))
        return 0
    if answer.notice:
        print(f"({answer.notice})")
    print(answer.answer)
    for c in answer.citations:
        where = " > ".join(p for p in (c.section,) if p)
        page = f", page {c.page}" if c.page else ""
        print(f"  [{c.id}] {c.title} ({c.doc}{page}{', ' + where if where else ''}) chars {c.start}-{c.end}")
        if c.answer and not answer.abstained:
            print(f"      exact answer: “{c.quote[c.answer[0] - c.start:c.answer[1] - c.start]}”")
    return 0


def _serve(settings: Settings, args) -> int:
    """Say what start-up is doing (the model load and the build take a while), then serve until Ctrl+C."""
    from .documents import corpus_files
    from .qa import QA
    from .server import Server, is_loopback

    host, port = getattr(args, "host", "127.0.0.1"), getattr(args, "port", 7860)
    qa = QA(settings)
    print(f"Loading the model ({qa.embedder.model_id.rsplit('/', 1)[-1]})…", flush=True)
    qa.embedder.embed_query(["warm-up"])
    if not getattr(args, "no_build", False):
        files = len(corpus_files(settings.corpus)[0]) if settings.corpus.is_dir() else 0
        print(f"Bringing the index up to date: {files} file{'s' * (files != 1)} in {settings.corpus}…", flush=True)
        report = qa.build()
        print(f"  {report.added} added, {report.changed} changed, {report.removed} removed, "
              f"{report.unchanged} unchanged, {report.skipped} skipped; {report.chunks} passages "
              f"in {report.seconds:.1f}s", flush=True)
        for skipped in report.skipped_files:
            print(f"  skipped {skipped.path}: {skipped.reason}", flush=True)
    qa.prepare()
    reach = "this machine only" if is_loopback(host) else "reachable from other machines, with no password: see README"

    def announce() -> None:
        print(f"Serving at {server.url} ({reach}); REST API at {server.url}api/ask, documented at {server.url}docs. "
              "Press Ctrl+C to stop.", flush=True)
        if not server.upload:
            print("Adding documents from the page is off (start with --allow-upload to turn it on).", flush=True)

    server = Server(qa, host=host, port=port, allow_upload=getattr(args, "allow_upload", False), ready=announce)
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
