"""The training loop of :class:`hcl.deep.HCL`: minibatch Adam, early stopping, checkpoints and resume.

After every epoch the whole training state (weights, optimiser, random generator states, histories,
early-stopping state) can be written to a checkpoint; a fit that finds one resumes from it and ends with
exactly the result of an uninterrupted fit with the same seed.

Importing this module imports torch.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from hcl.exceptions import ConvergenceWarning, ValidationError

__all__ = ["CHECKPOINT_FILE", "TrainSettings", "TrainState", "torch_threads", "train"]

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"


@dataclass
class TrainSettings:
    """What the loop needs from the estimator's parameters.

    Attributes
    ----------
    max_epochs, batch_size, lr, patience, verbose, device
        As in :class:`hcl.deep.HCL`.
    seed : int
        Seeds the shuffling and augmentation generator (``seed + 1``) and the validation one (``seed + 2``).
    """

    max_epochs: int
    batch_size: int
    lr: float
    patience: int | None
    verbose: bool
    device: str
    seed: int


@dataclass
class TrainState:
    """Everything that changes from epoch to epoch besides the weights and the optimiser.

    Attributes
    ----------
    history, val_history : list of float
        Training and validation objective per epoch.
    best_val : float
    best_state : dict or None
        Weights at the best validation objective.
    bad_epochs : int
        Epochs since the validation objective last improved.
    epoch : int
        Epochs done.
    stopped : bool
        Early stopping has triggered.
    """

    history: list[float] = field(default_factory=list)
    val_history: list[float] = field(default_factory=list)
    best_val: float = np.inf
    best_state: dict | None = None
    bad_epochs: int = 0
    epoch: int = 0
    stopped: bool = False


@contextmanager
def torch_threads(n_threads: int | None):
    """Let torch use ``n_threads`` threads inside the block (None: leave it), restoring the old number.

    Parameters
    ----------
    n_threads : int or None

    Yields
    ------
    None
    """
    old = torch.get_num_threads()
    if n_threads is not None:
        torch.set_num_threads(int(n_threads))
    try:
        yield
    finally:
        if n_threads is not None:
            torch.set_num_threads(old)


def _atomic_torch_save(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load_checkpoint(path: Path, fingerprint: str, net, opt, gen, device) -> TrainState:
    # safe: weights_only=True unpickles only tensors and plain containers, never code
    saved = torch.load(path, map_location=device, weights_only=True)
    if saved.get("fingerprint") != fingerprint:
        raise ValidationError(
            f"checkpoint {path} was written by a fit with other data or parameters; "
            "use an empty checkpoint_dir or the same X and parameters to resume"
        )
    net.load_state_dict(saved["model"])
    opt.load_state_dict(saved["optimizer"])
    gen.set_state(saved["generator"])
    torch.set_rng_state(saved["torch_rng"])
    state = TrainState(
        history=[float(v) for v in saved["history"]],
        val_history=[float(v) for v in saved["val_history"]],
        best_val=float(saved["best_val"]),
        best_state=saved["best_model"] or None,
        bad_epochs=int(saved["bad_epochs"]),
        epoch=int(saved["epoch"]),
        stopped=bool(saved["stopped"]),
    )
    logger.info("resuming HCL fit from %s at epoch %d", path, state.epoch)
    return state


def _save_checkpoint(path: Path, fingerprint: str, state: TrainState, net, opt, gen) -> None:
    _atomic_torch_save(
        {
            "fingerprint": fingerprint,
            "epoch": state.epoch,
            "model": net.state_dict(),
            "optimizer": opt.state_dict(),
            "generator": gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "history": state.history,
            "val_history": state.val_history,
            "best_val": float(state.best_val),
            "best_model": state.best_state or {},
            "bad_epochs": state.bad_epochs,
            "stopped": state.stopped,
        },
        path,
    )


def _train_epoch(net, objective, x_tr, m_tr, opt, gen, bs: int, device) -> float:
    """One pass over the shuffled training rows; returns the mean batch objective."""
    n_tr = m_tr.shape[1]
    n_batches = max(1, n_tr // bs)  # drop the ragged last batch (spectral negatives need a full batch)
    net.train()
    order = torch.randperm(n_tr, generator=gen)
    total = 0.0
    for b in range(n_batches):
        idx = order[b * bs : (b + 1) * bs].to(device)
        loss, _ = objective(net, [x[idx] for x in x_tr], m_tr[:, idx], generator=gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += float(loss.detach())
    return total / n_batches


def _validation_objective(net, objective, x_va, m_va, bs: int, seed: int) -> float:
    """Objective on the validation rows, in chunks of the batch size so memory stays bounded."""
    n_val = m_va.shape[1]
    net.eval()
    with torch.no_grad():
        vgen = torch.Generator().manual_seed(seed + 2)
        parts = []
        for c0 in range(0, n_val, bs):
            c1 = n_val if n_val - c0 < 2 * bs else c0 + bs  # no ragged small chunk
            vloss, _ = objective(net, [x[c0:c1] for x in x_va], m_va[:, c0:c1], generator=vgen)
            parts.append((float(vloss), c1 - c0))
            if c1 == n_val:
                break
    return sum(a * w for a, w in parts) / sum(w for _a, w in parts)


def _early_stopping(state: TrainState, v: float, net, patience: int | None) -> None:
    state.val_history.append(v)
    if not np.isfinite(state.best_val) or v < state.best_val - 1e-4 * max(1.0, abs(state.best_val)):
        state.best_val, state.bad_epochs = v, 0
        state.best_state = {k: t.detach().clone() for k, t in net.state_dict().items()}
    else:
        state.bad_epochs += 1
    if patience is not None and state.bad_epochs >= int(patience):
        state.stopped = True


def train(
    net,
    objective,
    train_rows: tuple[list, torch.Tensor],
    val_rows: tuple[list, torch.Tensor] | None,
    settings: TrainSettings,
    checkpoint: tuple[Path, str] | None = None,
    epoch_end: Callable[[int], None] | None = None,
) -> TrainState:
    """Train ``net`` on ``objective``; the best validation weights are loaded at the end.

    Parameters
    ----------
    net : HeadNetwork
        Freshly initialised (or to be overwritten by a checkpoint).
    objective : HCLObjective
    train_rows : (list of torch.Tensor (n, d_m), torch.Tensor (M, n) bool)
        Standardised inputs and observed mask of the training rows.
    val_rows : same as ``train_rows``, optional
        The validation rows; None disables early stopping.
    settings : TrainSettings
    checkpoint : (Path, str), optional
        Checkpoint file and the fingerprint of the fit's data and parameters.
    epoch_end : callable, optional
        Called with the number of epochs done, after each epoch's checkpoint.

    Returns
    -------
    TrainState
        Histories and the number of epochs run.
    """
    opt = torch.optim.Adam(net.parameters(), lr=float(settings.lr))
    gen = torch.Generator().manual_seed(settings.seed + 1)
    state = TrainState()
    if checkpoint is not None and checkpoint[0].exists():
        state = _load_checkpoint(checkpoint[0], checkpoint[1], net, opt, gen, settings.device)
    x_tr, m_tr = train_rows
    bs = min(int(settings.batch_size), m_tr.shape[1])
    from tqdm.auto import tqdm

    bar = tqdm(
        total=int(settings.max_epochs),
        initial=min(state.epoch, int(settings.max_epochs)),
        disable=not settings.verbose,
        desc="HCL",
        unit="epoch",
        leave=False,
    )
    try:
        while state.epoch < int(settings.max_epochs) and not state.stopped:
            state.history.append(_train_epoch(net, objective, x_tr, m_tr, opt, gen, bs, settings.device))
            state.epoch += 1
            if val_rows is not None:
                v = _validation_objective(net, objective, val_rows[0], val_rows[1], bs, settings.seed)
                _early_stopping(state, v, net, settings.patience)
            bar.update(1)
            val = f"{state.val_history[-1]:.4f}" if val_rows is not None else "-"
            bar.set_postfix(loss=f"{state.history[-1]:.4f}", val=val)
            if checkpoint is not None:
                _save_checkpoint(checkpoint[0], checkpoint[1], state, net, opt, gen)
            if epoch_end is not None:
                epoch_end(state.epoch)
    finally:
        bar.close()
    if not state.stopped and (settings.patience is not None and val_rows is not None):
        warnings.warn(
            f"HCL stopped at max_epochs={settings.max_epochs} before early stopping triggered "
            f"(validation objective {state.val_history[-1]:.4f}); raise max_epochs or lr",
            ConvergenceWarning,
            stacklevel=4,
        )
    if state.best_state is not None:
        net.load_state_dict(state.best_state)
    net.eval()
    return state
