"""Data sources: a registry from ``config.data.source`` to the cases of an experiment.

SPECIFICATION (to be implemented; this docstring becomes the module's documentation).

Every source reads the ``data`` section of a config (an ``ml_collections.ConfigDict``) and
returns a :class:`Split`: labelled, unlabelled and validation training cases and one or more
named test sets. The engine never names a source; it calls :func:`load_split`.

Keys of ``config.data`` every source reads (the base config holds them all):

``source``       "la_h5", "synthetic", "nifti" or "png2d" (:data:`SOURCES`).
``root``         the data folder ("" for "synthetic").
``labelled``     number of labelled training cases (-1: all of them).
``unlabelled``   number of unlabelled training cases after the labelled ones (-1: all the rest).
``val``          validation cases taken from the end of the non-labelled training cases.
``test``         test cases: for sources without a test split of their own, the number of
                 training cases held out as the test set by the seeded split; for sources with
                 fixed test lists, a cap (-1: all).
``split_seed``   seed of the split of sources with no fixed order.
``split_file``   "" or a JSON file ``{"labelled": [ids], "unlabelled": [...], "val": [...],
                 "test": {"<set>": [ids]}}`` that fixes the split (the run directory's
                 ``split.json`` has this layout).
``labels``       () to keep the label map; (k, ...) for the binary map ``label in labels``
                 (one-vs-rest; e.g. (1, 2) merges pancreas and tumour of MSD Task07).
``spacing``      () to keep each case's grid; (s_1, ..., s_N) mm to resample to that spacing
                 (image linear, label nearest); metrics use the spacing of the cases.
``intensity``    "keep", "zscore" (per case) or "clip_zscore" with ``clip = (lo, hi)``
                 (CT: clip to a HU window, then z-score).
``synthetic``    {"family": "la_like" | "cardiac_like" | "abdominal_ct_like" | "letter_b",
                  "train": n, "val": n, "test": n, "shape": (...), "spacing": (...)}.

Sources:

``la_h5``       ``<root>/<id>/mri_norm2.h5``; the shipped LA lists: the first ``labelled`` ids
                of the train list labelled, the next ``unlabelled`` unlabelled, the last ``val``
                of the rest for validation; the 20 test ids as the test set ``"test"``.
``synthetic``   the built-in generators, disjoint seed ranges for train/val/test; ``letter_b``
                gives the test sets ``"clean"`` and ``"corrupt"``, the others ``"test"``.
``nifti``       a Medical Segmentation Decathlon folder (``dataset.json``, ``imagesTr/``,
                ``labelsTr/``, ``imagesTs/``) or an nnU-Net raw folder (``_0000`` channel
                suffixes, channels stacked last, ids without the suffix). The test set is
                ``imagesTs/`` + ``labelsTs/`` when both exist, otherwise ``test`` training cases
                drawn with ``split_seed``; the remaining cases, in a seeded order, give the
                labelled/unlabelled/val parts.
``png2d``       the letter-B PNG layout (``train.csv``/``train.seg.csv``; test sets ``"clean"``
                from ``val.csv`` and ``"corrupt"`` from ``test.corrupt.csv``).

Cases read from files are loaded lazily (when indexed) and preprocessed on the fly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from jaxseg.data.case import Case

__all__ = ["SOURCES", "Split", "load_split"]


@dataclasses.dataclass(frozen=True)
class Split:
    """The cases of an experiment: training parts and named test sets."""

    labelled: Sequence[Case]
    unlabelled: Sequence[Case]
    val: Sequence[Case]
    test_sets: Mapping[str, Sequence[Case]]

    def ids(self) -> dict[str, Any]:
        """``{"labelled": [ids], "unlabelled": [...], "val": [...], "test": {set: [ids]}}``."""
        raise NotImplementedError


SOURCES: dict[str, Any] = {}


def load_split(data: Any, *, ids: Mapping[str, Any] | None = None) -> Split:
    """The :class:`Split` of a config's ``data`` section (``ids``: a fixed split, e.g. the
    run directory's ``split.json``)."""
    raise NotImplementedError
