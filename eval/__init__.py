"""The evaluation harness: question sets asked through the same `QA.ask` as the UI and CLI, and scored.

`python -m eval` (see `eval/__main__.py`); question files in `eval/questions.jsonl` and `eval/datasets/*/`.
"""
