"""Evaluation: the loss and the task's metrics over a loader, with every row's label, prediction
(and probabilities), in inference mode."""

from contextlib import nullcontext
from typing import Dict, Optional

import torch
from torch import nn
from tqdm.auto import tqdm

from sweep.model.device import Precision, mark_cuda_graph_step, model_inputs, to_device
from sweep.model.tasks import SINGLE_LABEL


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    loader,
    device: torch.device,
    desc: str = "eval",
    precision: Optional[Precision] = None,
    task=None,
) -> Dict[str, object]:
    """The loss and the task's metrics (sweep/model/tasks.py; single_label: accuracy, macro-F1 and the F1 of
    the positive class for two classes), with the per-example labels, predictions (and probabilities)."""
    task = task or SINGLE_LABEL
    model.eval()
    losses, labels, outputs, idx = [], [], [], []
    for batch in tqdm(loader, desc=desc, leave=False, dynamic_ncols=True, disable=None):
        mark_cuda_graph_step()
        batch = to_device(batch, device)
        with precision.autocast() if precision else nullcontext():
            logits = model(**model_inputs(batch))
        logits = logits.float()
        losses.append(task.loss(logits, batch["labels"], reduction="sum"))
        labels.append(batch["labels"])
        outputs.append(task.outputs(logits))
        idx.append(batch["idx"])
    labels_t = torch.cat(labels).cpu()
    out = {key: torch.cat([o[key] for o in outputs]).cpu() for key in outputs[0]}
    return {
        "loss": float(torch.stack(losses).sum()) / len(labels_t),
        **task.metrics(labels_t, out),
        "labels": labels_t.numpy(),
        **{key: value.numpy() for key, value in out.items()},
        "idx": torch.cat(idx).cpu().numpy(),
    }
