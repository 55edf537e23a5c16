"""Checkpoints, the resumable learning-rate schedule and manifests shared by the training commands (`python -m train`, `python -m train.query_tower`).

A checkpoint is the trained parameters and the Adam moments as safetensors (never pickle) plus a JSON file with
the step, the minutes spent and the settings that define the run; a run resumes only from a checkpoint made
with the same settings.
"""

from __future__ import annotations

import json
import os
import platform
import warnings
from pathlib import Path

from app.documents import file_sha256


def save(folder: Path, state: dict, module, optimizer, step: int, minutes: float, settings: dict) -> None:
    """`state` (the parameters training changes) and the optimiser's moments; written, then renamed."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.contiguous() for k, v in state.items()}
    names = {id(p): n for n, p in module.named_parameters()}
    for param, moments in optimizer.state.items():
        tensors[f"adam.{names[id(param)]}.exp_avg"] = moments["exp_avg"].contiguous()
        tensors[f"adam.{names[id(param)]}.exp_avg_sq"] = moments["exp_avg_sq"].contiguous()
    save_file(tensors, str(folder / "state.safetensors.tmp"))
    os.replace(folder / "state.safetensors.tmp", folder / "state.safetensors")
    meta = {"step": step, **settings, "minutes": round(minutes, 2)}
    (folder / "state.json").write_text(json.dumps(meta), encoding="utf-8")


def load(folder: Path, module, optimizer, settings: dict, command: str) -> tuple[int, float]:
    """The step to continue from and the minutes spent so far ((0, 0) without a checkpoint); refuses one made
    with other settings."""
    import torch
    from safetensors.torch import load_file

    meta_file = folder / "state.json"
    if not meta_file.is_file():
        return 0, 0.0
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    if any(meta.get(k) != v for k, v in settings.items()):
        raise SystemExit(f"{command}: {folder} holds a run with other settings {meta}; pass another --checkpoint")
    tensors = load_file(str(folder / "state.safetensors"))
    module.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=False)
    for name, param in module.named_parameters():
        if f"adam.{name}.exp_avg" in tensors:
            optimizer.state[param] = {"step": torch.tensor(float(meta["step"])),
                                      "exp_avg": tensors[f"adam.{name}.exp_avg"],
                                      "exp_avg_sq": tensors[f"adam.{name}.exp_avg_sq"]}
    return int(meta["step"]), float(meta.get("minutes", 0.0))


def schedule(optimizer, steps: int, done: int):
    """The learning rate: linear warm-up over the first 5% of `steps`, then linear decay to 0; replayed to the
    `done` steps of a resumed run, so that it follows the rates an unbroken run would."""
    import torch

    warmup = max(1, steps // 20)
    lr = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup))))
    with warnings.catch_warnings():  # stepped before any optimiser step, which torch warns about
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(done):
            lr.step()
    return lr


def add_run_options(parser, checkpoint: Path, out: Path, save_every: int) -> None:
    """The options every training command shares: where its checkpoint and weights go, when it stops (a stopped
    run resumes with the same command) and how often it saves."""
    parser.add_argument("--max-minutes", type=float, default=None, help="stop (checkpointed) after this long")
    parser.add_argument("--stop-at", type=int, default=None, metavar="STEP",
                        help="stop (checkpointed) at this step; the schedule still spans --steps")
    parser.add_argument("--save-every", type=int, default=save_every)
    parser.add_argument("--checkpoint", type=Path, default=checkpoint)
    parser.add_argument("--out", type=Path, default=out)


def optimise(loss, params: list, optimizer, schedule) -> None:
    """One step of the readers' training: gradients clipped to norm 1, the learning rate advanced."""
    import torch

    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    schedule.step()
    optimizer.zero_grad(set_to_none=True)


def data_record(data: Path) -> dict:
    """The training data as a manifest names it: file, sha256, licence and source."""
    return {"file": data.name, "sha256": file_sha256(data), "licence": "CC BY-SA 4.0",
            "source": "SQuAD v1.1 train (Rajpurkar et al., 2016)"}


def machine(threads: int) -> str:
    return f"{platform.machine()}, {threads} threads, CPU"


def run_record(command: str, argv: list[str], data: Path, seed: int, steps: int, schedule_steps: int,
               threads: int, minutes: float) -> dict:
    """What every manifest says of the run behind its weights: the data, the exact command, the seed, the
    steps taken of the schedule's, the machine and the minutes (every sitting of a resumed run)."""
    return {"data": data_record(data), "command": " ".join([command, *argv]), "seed": seed, "steps": steps,
            "schedule_steps": schedule_steps, "machine": machine(threads), "minutes": round(minutes, 1)}
