"""Data: readers for the papers' formats, preprocessing, validation and grain pipelines.

Every reader returns :class:`Case` records (image ``(*S, C)`` float32 channels last, integer
label, spacing in mm, affine) and raises :class:`jaxseg.errors.DataError` naming the file for
bad input. The sources registry (:func:`load_split`, :mod:`jaxseg.data.sources`) turns a config's
``data`` section into the labelled, unlabelled, validation and test cases of an experiment.
Pipelines turn cases into deterministic, resumable, shardable grain datasets. Built-in synthetic
generators (:mod:`jaxseg.data.synthetic`) make every experiment run without a download.
"""

from jaxseg.data import synthetic
from jaxseg.data.case import Case, MappedCases
from jaxseg.data.check import check_dataset
from jaxseg.data.files import CaseFiles, ChannelFiles
from jaxseg.data.la_h5 import LA_SPACING, la_list_cases, la_partition, la_split, load_la_case
from jaxseg.data.layouts import decathlon_cases, nifti_layout, nnunet_cases, paired_cases
from jaxseg.data.nifti import load_case, load_nnunet_case, save_nifti
from jaxseg.data.pipeline import (
    LoaderOptions,
    case_to_record,
    dataset,
    loader_options,
    semi_supervised_dataset,
)
from jaxseg.data.png2d import load_png_case, png_list_cases
from jaxseg.data.preprocess import (
    clip_and_zscore,
    one_hot,
    resample_onto,
    resample_to_shape,
    resample_to_spacing,
    zscore,
)
from jaxseg.data.sources import SOURCES, Preprocessing, Split, load_split
from jaxseg.data.synthetic import (
    CARDIAC_LABELS,
    abdominal_ct_like,
    cardiac_like,
    la_like,
    letter_b,
)
from jaxseg.data.transforms import (
    RandomAffine,
    RandomChannelShift,
    RandomCrop,
    RandomRotFlip,
    default_transforms,
    normalize,
)

__all__ = [
    "CARDIAC_LABELS",
    "LA_SPACING",
    "SOURCES",
    "Case",
    "CaseFiles",
    "ChannelFiles",
    "LoaderOptions",
    "MappedCases",
    "Preprocessing",
    "RandomAffine",
    "RandomChannelShift",
    "RandomCrop",
    "RandomRotFlip",
    "Split",
    "abdominal_ct_like",
    "cardiac_like",
    "case_to_record",
    "check_dataset",
    "clip_and_zscore",
    "dataset",
    "decathlon_cases",
    "default_transforms",
    "la_like",
    "la_list_cases",
    "la_partition",
    "la_split",
    "letter_b",
    "load_case",
    "load_la_case",
    "load_nnunet_case",
    "load_png_case",
    "load_split",
    "loader_options",
    "nifti_layout",
    "nnunet_cases",
    "normalize",
    "one_hot",
    "paired_cases",
    "png_list_cases",
    "resample_onto",
    "resample_to_shape",
    "resample_to_spacing",
    "save_nifti",
    "semi_supervised_dataset",
    "synthetic",
    "zscore",
]
