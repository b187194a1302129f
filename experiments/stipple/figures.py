"""The figures of a STIPPLE run for experiments/stipple/README.md.

Usage: python experiments/stipple/figures.py RUN_DIR OUT_DIR

Writes ``OUT_DIR/prior.png`` (the prior's bins, Figs. 2 and 5 of the paper) and
``OUT_DIR/pseudo_labels.png`` (the first pseudo-labelling round), copied from the run, and
``OUT_DIR/with_without_prior.png`` (Fig. 4): on the first test cases, the axial slice through the
organ's centre with the reference (green) and the prediction (red) of the network without prior,
with the prior positioned as the method does (KL search and refinement), and with the prior at
the label's own centre.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

from jaxseg.methods import get_method
from jaxseg.methods.stipple import cases
from jaxseg.priors import bounding_box
from jaxseg.train.experiment import load_data, load_run_config, restore_state
from jaxseg.train.state import local_copy
from jaxseg.viz import predictions_figure


def main(run: Path, out: Path, count: int = 3) -> None:
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(run / "figures" / "prior.png", out / "prior.png")
    shutil.copy(run / "figures" / "pseudo_round_1.png", out / "pseudo_labels.png")
    config = load_run_config(run)
    method = get_method(config.method)
    state, step = restore_state(method, config, run, str(config.eval.checkpoint))
    state = local_copy(state)
    prior = cases.host_prior(state)
    test = load_data(method, config).test_sets["test"]
    shown = []
    for case in list(test)[:count]:
        without = cases.probabilities(config, state.nets, case.image)
        preds = {"without prior": without > 0.5}
        for positioning in ("kl", "label"):
            config.prior.positioning = positioning
            centre = cases.locate(config, state.nets, prior, case.image, case.label)
            placed = cases.placed_prior(config, prior, centre, case.spatial_shape)
            prob = cases.probabilities(config, state.nets, case.image, placed)
            preds[f"prior, {positioning} positioning"] = prob > 0.5
        lo, hi = bounding_box(case.label == 1)
        z = int((lo[2] + hi[2]) // 2)
        cut = np.s_[:, :, z : z + 1]
        shown.append({
            "id": f"{case.id} (z={z})",
            "image": case.image[..., 0][cut],
            "ref": (case.label == 1)[cut],
            "preds": {name: mask[cut] for name, mask in preds.items()},
            "grids": {},
        })  # fmt: skip
    title = f"{run.name} of {run.parent.name}, step {step}: predictions without and with the prior"
    predictions_figure(out / "with_without_prior.png", shown, title)
    print(f"written: {out}/prior.png, pseudo_labels.png, with_without_prior.png")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]))
