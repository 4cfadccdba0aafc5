"""The saved state of :class:`hcl.deep.HCL`, for :class:`hcl.persistence.PersistenceMixin`.

Arrays: the network's weights (``net.<name>``), the standardisation (``mean.<m>``, ``scale.<m>``) and the
block models (``fusion.<structure>.<name>``, ``private.<structure>.<name>``). JSON state: the fitted
modalities, dimensions, structures, histories and summary rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["get_state", "set_state"]


def get_state(model) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """JSON-able learned attributes and the learned arrays of a fitted HCL.

    Parameters
    ----------
    model : HCL
        Fitted.

    Returns
    -------
    state : dict
    arrays : dict of str to ndarray
    """
    arrays = {f"net.{k}": v.detach().cpu().numpy() for k, v in model.net_.state_dict().items()}
    for m in model.modalities_:
        arrays[f"mean.{m}"] = np.asarray(model.mean_[m])
        arrays[f"scale.{m}"] = np.asarray(model.scale_[m])
    for kind_, fitted in (("fusion", model.fusion_), ("private", model.private_)):
        for st, params in fitted.items():
            for key, value in params.items():
                arrays[f"{kind_}.{st}.{key}"] = np.asarray(value)
    state = {
        "modalities": model.modalities_,
        "dims": model.dims_,
        "candidates": model.candidates_,
        "structure": model.structure_,
        "hidden": list(model._hidden_),
        "seed": model._seed_value,
        "history": model.history_,
        "val_history": model.val_history_,
        "n_epochs": model.n_epochs_,
        "summary": model.summary_records_,
        "dropped_structures": model.dropped_structures_,
    }
    return state, arrays


def set_state(model, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Restore what :func:`get_state` returned onto a freshly constructed HCL.

    Parameters
    ----------
    model : HCL
        Unfitted, with the saved parameters.
    state : dict
    arrays : dict of str to ndarray
    """
    import torch

    from hcl.deep.network import HeadNetwork

    model.modalities_ = list(state["modalities"])
    model.dims_ = {m: int(d) for m, d in state["dims"].items()}
    model.candidates_ = {s: int(d) for s, d in state["candidates"].items()}
    model.structure_ = {s: int(d) for s, d in state["structure"].items()}
    model._hidden_ = tuple(state["hidden"])
    model._seed_value = int(state["seed"])
    model.history_ = list(state["history"])
    model.val_history_ = list(state["val_history"])
    model.n_epochs_ = int(state["n_epochs"])
    model.summary_records_ = list(state["summary"])
    model.dropped_structures_ = list(state.get("dropped_structures", []))
    model._layout_ = model._layout()
    model.mean_ = {m: arrays[f"mean.{m}"] for m in model.modalities_}
    model.scale_ = {m: arrays[f"scale.{m}"] for m in model.modalities_}
    model.fusion_, model.private_ = {}, {}
    for key, value in arrays.items():
        kind_, _, rest = key.partition(".")
        if kind_ in ("fusion", "private"):
            st, name = rest.rsplit(".", 1)
            getattr(model, f"{kind_}_").setdefault(st, {})[name] = value.astype(np.float64)
    head_dims = [[b - a for _s, a, b in model._layout_[m]] for m in model.modalities_]
    net = HeadNetwork([model.dims_[m] for m in model.modalities_], model._hidden_, head_dims)
    net.load_state_dict({k[4:]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith("net.")})
    net.to(model.device)
    net.eval()
    model.net_ = net
