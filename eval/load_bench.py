"""Load benchmark: `python -m eval.load_bench [--clients 16] [--each 10] [--client rest|gradio|gradio_client]`.

Many clients ask at once, each waiting for its answer before asking the next question (no think time: the
worst case for a given number of people); conversations are asked with their history. Two runs, in this
order, in the same process: `QA.ask` called directly from that many threads (the core without any web
layer: the baseline), then the same questions through `python -m app serve` started as a user would, on a
free port, every client its own connection: `POST /api/ask` (`--client rest`, the default), Gradio's HTTP
protocol for its `/ask` endpoint (`--client gradio`) or `gradio_client`. Prints p50/p95/max latency, errors
and answers per second of both, and the web run's throughput as a fraction of the direct run's (the machine
is shared and noisy, so that ratio is what to compare across runs). Goal: no errors, p95 <= 1.5 s, and
throughput >= 0.8x of the direct run.

An error is an exception or a reply that breaks the contract (missing fields, a quote that is not
`text[start:end]` of its document).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from eval.questions import load_questions

ROOT = Path(__file__).resolve().parent.parent
GOAL_P95_S = 1.5
GOAL_RATIO = 0.8  # web throughput / direct throughput
FIELDS = {"question", "abstained", "answer", "citations"}

Ask = Callable[[str, tuple[str, ...]], dict]  # (question, history) -> answer JSON


@dataclass(frozen=True)
class Run:
    latencies: tuple[float, ...]  # seconds, one per successful question
    errors: tuple[str, ...]
    seconds: float

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] if ordered else float("nan")

    def line(self, label: str) -> str:
        asked = len(self.latencies) + len(self.errors)
        return (f"{label:<28} p50 {self.percentile(50) * 1000:7.0f} ms   p95 {self.percentile(95) * 1000:7.0f} ms   "
                f"max {max(self.latencies, default=float('nan')) * 1000:7.0f} ms   errors {len(self.errors)}/{asked}   "
                f"{asked / self.seconds:6.1f} answers/s")

    def to_json(self) -> dict:
        return {"p50_ms": round(self.percentile(50) * 1000, 1), "p95_ms": round(self.percentile(95) * 1000, 1),
                "max_ms": round(max(self.latencies, default=float("nan")) * 1000, 1),
                "questions": len(self.latencies) + len(self.errors), "errors": len(self.errors),
                "answers_per_s": round((len(self.latencies) + len(self.errors)) / self.seconds, 2)}


def contract_problem(reply: dict, texts: dict[str, str]) -> str | None:
    """Why `reply` breaks the answer contract, or None."""
    if not isinstance(reply, dict) or set(reply) < FIELDS or not str(reply.get("answer", "")).strip():
        return f"malformed reply {str(reply)[:120]!r}"
    for c in reply["citations"]:
        if texts.get(c["doc"], "")[c["start"]:c["end"]] != c["quote"]:
            return f"citation {c['id']} is not verbatim in {c['doc']!r}"
    return None


def run_clients(clients: list[Ask], questions: list[tuple[str, tuple[str, ...]]], each: int,
                texts: dict[str, str]) -> Run:
    """Every client asks `each` questions in turn, all clients at once; latency is per question."""
    latencies: list[float] = []
    errors: list[str] = []
    start_line = threading.Barrier(len(clients))

    def client(n: int) -> None:
        start_line.wait()
        for j in range(each):
            question, history = questions[(n * each + j) % len(questions)]
            began = time.perf_counter()
            try:
                problem = contract_problem(clients[n](question, history), texts)
            except Exception as exc:  # counted: the benchmark reports errors, it does not stop at the first
                problem = f"{type(exc).__name__}: {str(exc)[:160]}"
            if problem:
                errors.append(problem)
            else:
                latencies.append(time.perf_counter() - began)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(len(clients))]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Run(tuple(latencies), tuple(errors), time.perf_counter() - began)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def served(corpus: Path, index: Path) -> Iterator[str]:
    """`python -m app serve --no-build` on a free port, until the block ends; yields its URL."""
    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([sys.executable, "-m", "app", "serve", "--no-build", "--port", str(port),
                                 "--corpus", str(corpus), "--index", str(index)],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 300
            while True:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise SystemExit(f"the app did not start: {log.read().decode('utf-8', 'replace')[-1500:]}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.3)
            yield f"http://127.0.0.1:{port}/"
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def gradio_client(url: str) -> Ask:
    from gradio_client import Client

    client = Client(url, verbose=False)
    return lambda question, history: client.predict(question, list(history), api_name="/ask")


def rest_client(url: str) -> Ask:
    """`POST /api/ask` with the question and its history, one HTTP connection per client."""
    import httpx

    client = httpx.Client(base_url=url, timeout=300)

    def ask(question: str, history: tuple[str, ...]) -> dict:
        reply = client.post("api/ask", json={"question": question, "history": list(history)})
        reply.raise_for_status()
        return reply.json()

    return ask


def gradio_http_client(url: str) -> Ask:
    """Gradio's documented HTTP protocol for `/ask`: post the question, read the result event (far lighter
    than gradio_client, so the load generator takes little of the CPU it measures)."""
    import httpx

    client = httpx.Client(base_url=url, timeout=300)

    def ask(question: str, history: tuple[str, ...]) -> dict:
        posted = client.post("gradio_api/call/ask", json={"data": [question, list(history)]})
        posted.raise_for_status()
        result = client.get(f"gradio_api/call/ask/{posted.json()['event_id']}")
        result.raise_for_status()
        event = data = ""
        for line in result.text.splitlines():
            if line.startswith("event:"):
                event = line.removeprefix("event:").strip()
            elif line.startswith("data:"):
                data = line.removeprefix("data:").strip()
        if event != "complete":
            raise RuntimeError(f"event {event!r}: {data[:160]}")
        return json.loads(data)[0]

    return ask


CLIENTS = {"rest": rest_client, "gradio": gradio_http_client, "gradio_client": gradio_client}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m eval.load_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=16, help="clients asking at once (default 16)")
    p.add_argument("--each", type=int, default=10, help="questions per client (default 10)")
    p.add_argument("--client", choices=sorted(CLIENTS), default="rest",
                   help="how web clients connect (default rest: POST /api/ask)")
    p.add_argument("--corpus", default=str(ROOT / "corpus"))
    p.add_argument("--questions", default=str(ROOT / "eval" / "questions.jsonl"))
    p.add_argument("--json", action="store_true", help="also print the figures as one JSON object (last line)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from app.documents import load_document
    from app.qa import QA
    from app.settings import Settings

    questions = [(q.question, q.history) for q in load_questions(Path(args.questions))]
    with tempfile.TemporaryDirectory(prefix="verbatim-load-") as work:
        settings = Settings(corpus=Path(args.corpus), index=Path(work) / "index")
        qa = QA(settings)
        report = qa.build()
        texts = {doc: load_document(settings.corpus / doc, settings.corpus, int(settings.max_file_mb * 1e6)).text
                 for doc in qa.store().manifest["files"]}  # as the loader reads them: quotes are checked on these
        print(f"{report.chunks} passages from {args.corpus}; {len(questions)} distinct questions; "
              f"{args.clients} clients x {args.each} questions, QA.ask directly, then via {args.client}", flush=True)
        runs = {"direct": measure(lambda: lambda q, h: qa.ask(q, h).to_json(), questions, args, texts)}
        with served(settings.corpus, settings.index) as url:
            runs["web"] = measure(lambda: CLIENTS[args.client](url), questions, args, texts)
    return report_runs(runs, args)


def measure(make_client: Callable[[], Ask], questions, args, texts) -> Run:
    warm = make_client()
    for question, history in questions[:3]:  # the first question loads the model
        warm(question, history)
    return run_clients([make_client() for _ in range(args.clients)], questions, args.each, texts)


def report_runs(runs: dict[str, Run], args) -> int:
    direct, web = runs["direct"], runs["web"]
    label = {"rest": "POST /api/ask", "gradio": "Gradio /ask (HTTP)", "gradio_client": "gradio_client /ask"}
    print(direct.line(f"QA.ask, {args.clients} threads"))
    print(web.line(f"{label[args.client]}, {args.clients} clients"))
    ratio = web.to_json()["answers_per_s"] / direct.to_json()["answers_per_s"]
    p95 = web.percentile(95)
    met = p95 <= GOAL_P95_S and not web.errors and ratio >= GOAL_RATIO
    print(f"throughput through the web: {ratio:.2f}x of QA.ask directly")
    print(f"goal no errors, p95 <= {GOAL_P95_S:.1f} s, throughput >= {GOAL_RATIO:.1f}x: {'met' if met else 'NOT met'} "
          f"({len(web.errors)} errors, p95 {p95:.2f} s, {ratio:.2f}x)")
    for problem in sorted(set(web.errors + direct.errors))[:5]:
        print(f"  error: {problem}")
    if args.json:
        print(json.dumps({"client": args.client, "clients": args.clients, "each": args.each, "met": met,
                          "goal_p95_ms": GOAL_P95_S * 1000, "goal_ratio": GOAL_RATIO, "ratio": round(ratio, 3),
                          "direct": direct.to_json(), "web": web.to_json()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
