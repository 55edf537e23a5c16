"""Dev figures for a reader under training, on held-out SQuAD articles: does the answering sentence rank first
among its look-alikes, are probabilities on the right side of 0.5, and how exact is the answer span."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from app.reader import best_spans, encode
from eval.metrics import answer_words, token_f1

from .examples import Example


def dev_figures(net, tok, examples: Sequence[Example]) -> dict:
    import torch

    first = positive_above = negative_below = exact = 0
    f1 = 0.0
    negatives = 0
    for ex in examples:
        question = ex.pairs[0].question
        texts = [p.candidate for p in ex.pairs]
        batch = encode(tok, [question] * len(texts), texts)
        offsets = batch.pop("offset_mapping").numpy()
        segment = np.array([[sid == 1 for sid in batch.sequence_ids(i)] for i in range(len(texts))])
        with torch.inference_mode():
            logits, span = net(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        probs = torch.sigmoid(logits).numpy()
        first += int(np.argmax(probs) == 0)
        positive_above += int(probs[0] >= 0.5)
        negative_below += int((probs[1:] < 0.5).sum())
        negatives += len(probs) - 1
        (s, e), = best_spans(span[:1, :, 0].numpy(), span[:1, :, 1].numpy(), segment[:1], offsets[:1]) or [(0, 0)]
        predicted, gold = texts[0][s:e], texts[0][slice(*ex.pairs[0].span)]
        exact += int(answer_words(predicted) == answer_words(gold))
        f1 += token_f1(predicted, gold)
    n = max(len(examples), 1)
    return {"questions": len(examples), "answer_first": round(first / n, 4),
            "positive_p_over_half": round(positive_above / n, 4),
            "negative_p_under_half": round(negative_below / max(negatives, 1), 4),
            "span_exact": round(exact / n, 4), "span_f1": round(f1 / n, 4)}
