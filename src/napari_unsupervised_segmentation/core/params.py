"""Every setting of the segmentation, declared once, with the paper's or the public demo's defaults.

Each field of :class:`SegmentationParams` is declared with :func:`setting`: its group, type,
range or choices, default in each preset, a one-line help that says which way to turn it,
and which option it belongs to. Validation, the command line's flags, the widget's controls
and ``docs/parameters.md`` (``python -m napari_unsupervised_segmentation.core.params``) all
come from these declarations (:data:`SETTINGS`).

Settings that belong to an option (``compactness`` to SLIC superpixels, ``spectral_weight``
to the texture merge, ...) are ``None`` while that option is not chosen: giving one of them
then raises a ValueError that names the option, instead of being ignored. Left out (None)
while their option is chosen, they take that option's default.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: What the groups of settings control, in the order they are shown.
GROUPS: dict[str, str] = {
    "training": "how the network learns its classes",
    "refinement": "the superpixels that refine the network's prediction while it trains",
    "post-processing": "how the network's classes become the labels you get",
    "runtime": "where and how the computation runs (never what it means)",
}

PRECISIONS = ("fp32", "tf32", "bf16")
SUPERPIXELS = ("slic", "graph")
LABEL_BY = ("class", "segment", "object")
OBJECT_SPLITS = ("off", "distance")
#: How the background classes of objects are found (see core/objects.py).
BACKGROUND_RULES = ("intensity", "border")
#: The settings that make objects of classes (``label_by="object"``).
OBJECT_SETTINGS = ("label_by", "object_background", "object_split", "object_min_distance",
                   "object_min_size", "fill_holes")  # fmt: skip
MERGES = ("off", "colour", "texture")
#: Names of the presets, in the order they are shown.
PRESET_NAMES = ("default", "paper", "objects")


@dataclass(frozen=True)
class Requirement:
    """A setting applies only when ``option`` is one of ``values`` (None: not 0)."""

    option: str
    values: tuple[Any, ...] | None = None

    def holds(self, values: Mapping[str, Any]) -> bool:
        value = values.get(self.option)
        if self.values is None:
            return value is not None and value != 0
        return value in self.values

    def words(self) -> str:
        """The requirement as a user would set it, e.g. ``merge='texture'``."""
        if self.values is None:
            return f"{self.option} > 0"
        return " or ".join(f"{self.option}={value!r}" for value in self.values)


@dataclass(frozen=True)
class Setting:
    """The declaration of one setting (see :func:`setting`); ``name`` and ``kind`` come from
    the field it declares."""

    group: str
    help: str
    default: Any
    presets: Mapping[str, Any]
    minimum: float | None
    maximum: float | None
    above: bool  # the minimum itself is excluded
    below: bool  # the maximum itself is excluded
    choices: tuple[Any, ...] | None
    requires: tuple[Requirement, ...]
    label: str
    basic: bool
    details: str
    widget: Mapping[str, Any]
    name: str = ""
    kind: str = ""  # "int", "float", "bool", "str"
    optional: bool = False  # None is a value of its own (``seed``)

    def default_for(self, values: Mapping[str, Any]) -> Any:
        """The default when this setting applies, given the other settings' ``values``."""
        if isinstance(self.default, dict):
            return self.default[values[self.requires[0].option]]
        return self.default

    def applies(self, values: Mapping[str, Any]) -> bool:
        """Whether the options this setting belongs to are chosen in ``values``."""
        return all(r.holds(values) and _applies(r.option, values) for r in self.requires)

    def range_words(self) -> str:
        """The values it takes, e.g. ``integer >= 1`` or ``'slic', 'graph'``."""
        if self.choices is not None:
            return ", ".join(repr(c) for c in self.choices)
        if self.kind == "bool":
            return "True or False"
        words = {"int": "integer", "float": "number", "str": "text"}[self.kind]
        parts = []
        if self.minimum is not None:
            parts.append(f"{'>' if self.above else '>='} {_number(self.minimum)}")
        if self.maximum is not None:
            parts.append(f"{'<' if self.below else '<='} {_number(self.maximum)}")
        text = f"{words} {' and '.join(parts)}".strip()
        return text + (", or None" if self.optional else "")

    def check(self, value: Any) -> None:
        """Raise ValueError naming the setting when ``value`` is of the wrong type or range."""
        if value is None and self.optional:
            return
        if self.choices is not None:
            ok = isinstance(value, str) and value in self.choices
        elif self.kind == "bool":
            ok = isinstance(value, bool | np.bool_)
        elif self.kind == "int":
            ok = _is_int(value) and self._in_range(value)
        elif self.kind == "float":
            ok = _is_real(value) and self._in_range(value)
        else:
            ok = isinstance(value, str) and bool(value)
        if not ok:
            raise ValueError(f"{self.name} must be {self.range_words()}; got {value!r}")

    def _in_range(self, value: float) -> bool:
        low, high = self.minimum, self.maximum
        if low is not None and (value <= low if self.above else value < low):
            return False
        return not (high is not None and (value >= high if self.below else value > high))


def setting(
    group: str,
    default: Any,
    help: str,
    *,
    presets: Mapping[str, Any] | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    above: bool = False,
    below: bool = False,
    choices: tuple[Any, ...] | None = None,
    requires: tuple[Requirement, ...] = (),
    label: str = "",
    basic: bool = False,
    details: str = "",
    widget: Mapping[str, Any] | None = None,
) -> Any:
    """Declare a field of :class:`SegmentationParams`.

    Parameters
    ----------
    group : str
        One of :data:`GROUPS`.
    default : object
        The value in ``SegmentationParams()`` (the ``paper`` preset). For a setting that
        belongs to an option (``requires``): its value when that option is chosen, or a dict
        from the first requirement's value to the default under it.
    help : str
        One line: what it does, which way to turn it, when it applies.
    presets : dict, optional
        Preset name -> value, where a preset departs from ``default``.
    minimum, maximum, above, below
        The range of a number (``above``/``below``: the bound itself is excluded).
    choices : tuple, optional
        The values a text setting takes.
    requires : tuple of Requirement
        The options this setting belongs to: elsewhere it is None and may not be given.
    label, basic, widget
        The widget's label, whether the control sits in the basic section, and options of
        its control (``max``, ``step``, ``min``) where they differ from the range.
    details : str
        More for ``docs/parameters.md`` (markdown), beside ``help``.
    """
    declaration = Setting(
        group=group,
        help=help,
        default=default,
        presets=dict(presets or {}),
        minimum=minimum,
        maximum=maximum,
        above=above,
        below=below,
        choices=choices,
        requires=requires,
        label=label,
        basic=basic,
        details=details,
        widget=dict(widget or {}),
    )
    value = None if requires else default
    return field(default=value, metadata={"setting": declaration})


_SLIC = (Requirement("superpixels", ("slic",)),)
_GRAPH = (Requirement("superpixels", ("graph",)),)
_SEGMENTS = (Requirement("label_by", ("segment",)),)
_OBJECTS = (Requirement("label_by", ("object",)),)
_MERGE = (Requirement("merge", ("colour", "texture")),)
_TEXTURE = (Requirement("merge", ("texture",)),)


@dataclass(frozen=True)
class SegmentationParams:
    """Settings of :func:`~napari_unsupervised_segmentation.segment`, by group.

    ``SegmentationParams()`` is the ``paper`` preset: Kanezaki (ICASSP 2018), with its
    public demo's stopping rule and 500 iterations (the demo's own default is 1000). A
    setting that belongs to an option not chosen is None (see the module's docstring).
    """

    # --- training ---
    stretch_contrast: bool = setting(
        "training",
        False,
        "Scale each image (each plane of a stack, each file) between its own 1st and 99.8th "
        "percentile, 8-bit too; on: dim and bright images segment alike; off: one intensity is "
        "one class in every image.",
        presets={"objects": True},
        label="Stretch contrast",
        details="Off, 8-bit images are taken as they are (0 to 255) and other types between "
        "the percentiles of all the data a model trains on, so a model gives one intensity one "
        "class everywhere. On suits files from different microscopes or exposures, and dim "
        "8-bit fluorescence. A model trained with it stretches each plane it labels the same way.",
    )
    max_iter: int = setting(
        "training",
        500,
        "Most training iterations (the paper's T); higher: longer training, often fewer "
        "classes (min_classes can stop it sooner).",
        presets={"default": 160, "objects": 160},
        minimum=1,
        label="Max iterations",
        basic=True,
        details="Each iteration costs about the same.",
    )
    min_classes: int = setting(
        "training",
        3,
        "Stop once the network's prediction has this many classes or fewer; higher: stops "
        "sooner with more classes (0: never stops early).",
        presets={"objects": 6},
        minimum=0,
        label="Stop at classes",
        basic=True,
        details="The public demo's rule; it watches `Step.n_classes`, the network's classes "
        "before post-processing (which can then leave more or fewer segments). Must be below "
        "`max_classes`.",
        widget={"max": 4095},
    )
    max_classes: int = setting(
        "training",
        100,
        "The most classes the network can find (filters per layer); higher: room for more "
        "classes, more memory and time.",
        presets={"default": 32, "objects": 32},
        minimum=2,
        label="Max classes",
        details="Memory grows with it (see [python-api.md](python-api.md#memory-check)).",
        widget={"max": 4096},
    )
    n_conv: int = setting(
        "training",
        2,
        "Number of [3x3 conv, ReLU, BatchNorm] blocks (the paper's M); higher: a pixel's class "
        "sees a wider neighbourhood (2 x n_conv + 1 pixels).",
        minimum=1,
        label="Conv blocks",
        widget={"max": 64},
    )
    lr: float = setting(
        "training",
        0.1,
        "SGD learning rate; higher: faster, less steady training.",
        minimum=0,
        above=True,
        label="Learning rate",
        details="The widget takes 0.001 to 100.",
        widget={"min": 1e-3, "max": 100.0, "step": 1e-3},
    )
    momentum: float = setting(
        "training",
        0.9,
        "SGD momentum; higher: smoother, slower-turning updates.",
        minimum=0,
        maximum=1,
        below=True,
        label="Momentum",
        widget={"max": 0.999, "step": 1e-3},
    )
    continuity_weight: float = setting(
        "training",
        0.0,
        "Weight of a spatial continuity loss; higher: smoother classes (0: the paper's loss "
        "alone).",
        minimum=0,
        label="Continuity weight",
        details="The loss of Kim, Kanezaki and Tanaka (IEEE TIP 2020): the mean absolute "
        "difference of neighbouring responses, added to the cross-entropy.",
        widget={"max": 1e3, "step": 1e-3},
    )
    # --- refinement ---
    superpixels: str = setting(
        "refinement",
        "slic",
        "What refines the network's prediction: 'slic' superpixels (the paper) or 'graph'-based "
        "segments, whose outlines follow the image's edges.",
        choices=SUPERPIXELS,
        label="Superpixels",
        details="`'graph'`: Felzenszwalb-Huttenlocher graph-based segments (scikit-image's "
        "`felzenszwalb`, sigma 0.5, smallest segment 20 pixels); their number follows the "
        "image's content (a median of 1752 per BSDS500 `val` photo at scale 100). With the "
        "`default` preset's post-processing, `superpixel_scale=100` and "
        "`merge_threshold=0.42` (about 0.015 below the default's, for the same segment "
        "counts) score on BSDS500 photos about as the default does at equal VI (within the "
        "spread between seeds and image sets; see "
        "[benchmarks.md](benchmarks.md#options-beside-the-default)); on blurred, noisy "
        "microscopy-like images SLIC does better, so the default keeps SLIC.",
    )
    n_superpixels: int | None = setting(
        "refinement",
        10000,
        "Number of SLIC superpixels; higher: smaller superpixels, finer classes, slower.",
        presets={"default": 3000, "objects": 3000},
        minimum=1,
        requires=_SLIC,
        label="Superpixels (SLIC)",
        widget={"step": 100},
    )
    compactness: float | None = setting(
        "refinement",
        100.0,
        "SLIC compactness; higher: squarer superpixels, lower: they follow colour edges.",
        presets={"default": 10.0, "objects": 10.0},
        minimum=0,
        above=True,
        requires=_SLIC,
        label="Compactness",
        details="Non-RGB channels are scaled to 0..100 so that it means the same as for Lab.",
        widget={"min": 1e-3, "max": 1e6, "step": 1e-3},
    )
    superpixel_scale: float | None = setting(
        "refinement",
        100.0,
        "Scale of the graph-based superpixels; higher: fewer, larger superpixels.",
        minimum=0,
        above=True,
        requires=_GRAPH,
        label="Superpixel scale",
        widget={"min": 1.0, "max": 1e6, "step": 50.0},
    )
    # --- post-processing ---
    label_by: str = setting(
        "post-processing",
        "class",
        "'class': one label per network class (the paper); 'segment': one label per "
        "4-connected segment, cut, merged and cleaned up; 'object': one label per nucleus "
        "or cell, background 0.",
        presets={"default": "segment", "objects": "object"},
        choices=LABEL_BY,
        label="Label by",
        details="With `'class'` a class found in several places is one label; with "
        "`'segment'` each place is its own label (as the paper did before scoring), and "
        "every other post-processing setting applies. With `'object'` the background classes "
        "(`object_background`) become 0 and the others foreground, whose holes are filled and "
        "whose touching objects are split (`object_split`); see "
        "[how-it-works.md](how-it-works.md#objects-the-objects-preset).",
    )
    cut_scale: float | None = setting(
        "post-processing",
        0.0,
        "Also cut the segments along graph-based segments of this scale, for the merge to "
        "join again where the boundary is weak; higher: fewer cuts (0: no cut).",
        presets={"default": 700.0},
        minimum=0,
        requires=_SEGMENTS,
        label="Cut scale",
        details="Felzenszwalb-Huttenlocher graph-based segments (scikit-image's "
        "`felzenszwalb`, sigma 0.5, smallest segment 20 pixels), so that the merge can "
        "follow edges the network missed.",
        widget={"max": 1e6, "step": 50.0},
    )
    merge: str | None = setting(
        "post-processing",
        "off",
        "Join touching segments across weak boundaries, measured by 'colour' contrast or by "
        "a 'texture' (colour-and-texture) gradient; 'off': no merge.",
        presets={"default": "texture"},
        choices=MERGES,
        requires=_SEGMENTS,
        label="Merge by",
        details="Weakest boundary first; strengths are averaged along the boundary and pooled "
        "as segments join. `'colour'`: the colour difference (Lab for RGB, channels scaled to "
        "0..100 otherwise, after a 1-pixel Gaussian blur) between the two pixels of each "
        "4-neighbour pair that straddles the boundary. `'texture'`: a colour-and-texture "
        "gradient in 0..1, high where the histograms of colour and of textons in the two "
        "halves of a disc around a pixel differ (3/4 colour: the mean over the Lab channels of "
        "an RGB image, the largest over the channels otherwise, so an edge seen in one stain "
        "of many counts fully; 1/4 textons) (after Martin, Fowlkes and Malik, TPAMI 2004; "
        "discs of 5 and 10 pixels, 8 orientations), so the inside of an evenly textured "
        "region is not an edge; computed once per run, on a copy shrunk to about 512 x 512 "
        "pixels when the image is larger (on a 2-core AMD EPYC CPU with nothing else "
        "running: 4.3 to 4.6 s for a 481 x 321 photo, 7.4 s for a 1024 x 1024 RGB image). "
        "The merge visits every pair of touching segments, so keep `min_segment_size` above 1 "
        "on large, noisy images.",
    )
    merge_threshold: float | None = setting(
        "post-processing",
        {"colour": 2.0, "texture": 0.435},
        "Join until every boundary is at least this strong; higher: fewer, larger segments "
        "(colour: around 2; texture: around 0.3 to 0.45).",
        minimum=0,
        requires=_MERGE,
        label="Merge threshold",
        basic=True,
        details="The strength is the boundary's (see `merge`), less the "
        "`merge_interior_weight` term, plus the `merge_region_weight` and `spectral_weight` "
        "terms. Texture thresholds: around 0.18 with `merge_interior_weight` 0.5 alone, 0.26 "
        "with a spectral weight of 0.2 beside it; the default's 0.435 goes with an interior "
        "weight of 0.3, a region weight of 0.4, a spectral weight of 0.2 and a premerge at "
        "0.4; with the gradient alone 1 or more joins everything, while the spectral and "
        "region terms can lift a boundary up to `2 x spectral_weight + merge_region_weight` "
        "higher. 0 leaves the merge to `max_segments`.",
        # Steps of 0.005 (so three decimals): the default's threshold is 0.435.
        widget={"max": 1e3, "step": 0.005},
    )
    max_segments: int | None = setting(
        "post-processing",
        0,
        "Keep joining the weakest boundaries past merge_threshold until at most this many "
        "segments are left; lower: fewer segments (0: no cap).",
        minimum=0,
        requires=_MERGE,
        label="Max segments",
        details="For when you know roughly how many regions there are; with "
        "`merge_threshold` 0 it is the only merge; the last clean-up (`min_segment_size`, "
        "`min_segment_width`) can only remove more. Not part of the default: on BSDS500 `val` "
        "a cap scores as a higher threshold does.",
    )
    merge_interior_weight: float | None = setting(
        "post-processing",
        {"colour": 0.0, "texture": 0.3},
        "Judge each boundary against the inside of the calmer of its two segments; higher: "
        "pieces of one texture join more readily (0: the boundary alone).",
        minimum=0,
        requires=_MERGE,
        label="Interior weight",
        details="A boundary's strength counts as weaker by this share of the mean strength "
        "(the texture gradient, or each pixel's mean colour step to its 4 neighbours) inside "
        "the calmer of the two segments, pooled as segments join; the pieces of one texture or "
        "noisy region then join while a faint edge between two calm regions stays (after the "
        "internal-variation test of Felzenszwalb and Huttenlocher, IJCV 2004). Every join "
        "re-weighs all boundaries of the joined segment, so keep `min_segment_size` above 1 "
        "(with one-pixel specks on a large noisy image the merge can take minutes).",
        widget={"max": 1e3, "step": 0.05},
    )
    merge_region_weight: float | None = setting(
        "post-processing",
        0.4,
        "Count a boundary stronger by how unlike its two segments' colour and texton "
        "histograms are; higher: alike segments join, unlike ones stay apart (raise "
        "merge_threshold with it).",
        minimum=0,
        requires=_TEXTURE,
        label="Region weight",
        details="This times the chi-squared distance (0 alike, 1 disjoint) between the "
        "histograms of the two whole segments (the cues and the 3/4 colour, 1/4 texture mix "
        "of the texture gradient; pooled as segments join), so two segments alike inside join "
        "across a shading edge and segments of different stuff stay apart across a faint "
        "one. A weight of 0.4 goes with thresholds about 0.12 higher than without it; it costs "
        "about 1 s per BSDS500 photo on a 2-core CPU and makes the merge about 2.5 times as "
        "long on a 1024 x 1024 photo. 0 is off.",
        widget={"max": 1e3, "step": 0.05},
    )
    spectral_weight: float | None = setting(
        "post-processing",
        0.2,
        "Add a global cue to the boundaries, weakest inside one coherent region; higher: "
        "boundaries between regions count more than those inside (raise merge_threshold "
        "with it; 0: off).",
        minimum=0,
        requires=_TEXTURE,
        label="Spectral weight",
        details="Before the merge, the segments form a graph (touching segments linked by "
        "`length x exp(-mean gradient / 0.3)` along their common boundary), each segment gets "
        "the coordinates of the 8 first non-trivial normalised-cuts eigenvectors of that graph "
        "(each divided by the square root of its eigenvalue), and every pixel on a boundary "
        "gets the distance between the coordinates of the two segments, divided by its 90th "
        "percentile over the touching pairs and clipped at 2 (after the spectral "
        "globalisation of Arbelaez, Maire, Fowlkes and Malik, TPAMI 2011, on segments instead "
        "of pixels: about 0.1 s for a few hundred segments). Every boundary gets stronger, "
        "those inside a coherent region least, so `merge_threshold` must rise with it (0.2 "
        "goes with about 0.24 to 0.26 in place of 0.18); the cue also counts in the segments' "
        "insides that `merge_interior_weight` weighs, and a pixel on several boundaries keeps "
        "the largest distance.",
        widget={"max": 1e3, "step": 0.05},
    )
    premerge_threshold: float | None = setting(
        "post-processing",
        0.4,
        "Merge first to this threshold, then again to merge_threshold with the spectral cue "
        "computed afresh on the joined segments; higher: a longer first merge (0: one merge).",
        minimum=0,
        requires=(*_TEXTURE, Requirement("spectral_weight")),
        label="Premerge threshold",
        details="The second merge's graph of fewer, larger segments sees further: its first "
        "eigenvectors separate larger regions. Specks are removed between the two merges; a "
        "value above `merge_threshold` counts as `merge_threshold`.",
        widget={"max": 1e3, "step": 0.005},
    )
    min_segment_size: int | None = setting(
        "post-processing",
        0,
        "Give segments smaller than this many pixels to their neighbours, before and after "
        "the merge; higher: fewer small specks (0: keep every segment).",
        presets={"default": 16},
        minimum=0,
        requires=_SEGMENTS,
        label="Min segment size",
        details="Removed before the merge, specks cannot bridge two regions.",
    )
    min_segment_width: int | None = setting(
        "post-processing",
        0,
        "Last, give segments narrower than this many pixels to their neighbours; higher: "
        "fewer thin rims along edges (0 or 1: keep them).",
        presets={"default": 5},
        minimum=0,
        requires=_SEGMENTS,
        label="Min segment width",
        details="A segment is narrower than the width when none of its pixels lies "
        "(width - 1) / 2 pixels or more from its outline: the rims a network draws along "
        "blurred edges.",
        widget={"max": 1000},
    )
    object_background: str | None = setting(
        "post-processing",
        "intensity",
        "Which classes are background: 'intensity', those nearer the dominant class's "
        "brightness than the image's Otsu threshold; 'border', those covering the image border.",
        choices=BACKGROUND_RULES,
        requires=_OBJECTS,
        label="Background",
        details="'intensity' measures each class's mean brightness (smoothed by 1 pixel) on a "
        "scale from the largest class's mean (0) to Otsu's threshold of the image (1), objects "
        "on the side of the threshold with fewer pixels: classes below 0.5 are background, and "
        "pixels of the other classes below 0.8 are trimmed off (a class's dim halo). 'border' "
        "takes the class with most pixels along the image border and every class more common "
        "there than inside. In the widget, clicking a class toggles it.",
    )
    object_split: str | None = setting(
        "post-processing",
        "distance",
        "How touching objects part: 'distance' splits them along the waist of their distance "
        "transform (round nuclei and cells); 'off': each connected piece is one object.",
        choices=OBJECT_SPLITS,
        requires=_OBJECTS,
        label="Split objects",
        details="A watershed of the foreground's Euclidean distance transform (in a volume, "
        "measured with its `spacing`), seeded at its local maxima at least `object_min_distance` "
        "pixels apart.",
    )
    object_min_distance: int | None = setting(
        "post-processing",
        5,
        "Least distance in pixels between two objects' centres; higher: fewer splits "
        "(about the smallest object's radius).",
        minimum=1,
        requires=(*_OBJECTS, Requirement("object_split", ("distance",))),
        label="Min object distance",
        widget={"max": 10000},
    )
    object_min_size: int | None = setting(
        "post-processing",
        16,
        "Objects smaller than this many pixels (voxels) become background; higher: fewer "
        "specks (0: keep every object).",
        minimum=0,
        requires=_OBJECTS,
        label="Min object size",
    )
    fill_holes: bool | None = setting(
        "post-processing",
        True,
        "Fill the holes inside objects (background enclosed by foreground); off: keep them.",
        requires=_OBJECTS,
        label="Fill holes",
        details="In a volume, the cavities that no face of the volume reaches.",
    )
    # --- runtime ---
    seed: int | None = setting(
        "runtime",
        0,
        "Random seed: the same seed on the same device gives the same labels; another seed, "
        "another result (None: a fresh random start every run).",
        minimum=0,
        maximum=2**64 - 1,
        label="Seed",
        basic=True,
        details="Seeds the network's initialisation (and the texton k-means of the texture "
        "merge). -1 in the widget and `none` on the command line are None.",
    )
    device: str = setting(
        "runtime",
        "auto",
        "'auto' (CUDA, then MPS, then CPU), 'cpu', 'cuda', 'cuda:1' or 'mps'.",
        label="Device",
        basic=True,
        details="An absent device is a clear error.",
    )
    precision: str = setting(
        "runtime",
        "fp32",
        "'fp32'; 'tf32' (TensorFloat-32 on CUDA: faster there); 'bf16' (autocast to bfloat16 "
        "on the CPU or GPU: faster on hardware with bfloat16).",
        choices=PRECISIONS,
        label="Precision",
        details="`'fp32'`: plain float32 (on CUDA the run turns off the TensorFloat-32 "
        "convolutions PyTorch allows by default, and puts the flags back after); `'tf32'` has "
        "no effect off CUDA; `'bf16'` is 1.5x as fast per iteration of the `paper` preset on a "
        "2-core AMD EPYC with AVX512-BF16 instructions (CPUs without them may gain less).",
    )

    def __post_init__(self) -> None:
        values = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.integer | np.floating | np.bool_):  # as plain numbers
                value = value.item()
            values[f.name] = value
        values = _complete(values)
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def validate(self) -> None:
        """Raise ValueError naming the first setting that is out of range or does not apply."""
        _complete({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})

    def replace(self, **changes: Any) -> SegmentationParams:
        """A copy with some settings changed (validated).

        Choosing another option drops the settings of the option left (they become None)
        and gives those of the option chosen its defaults, unless ``changes`` sets them.
        """
        unknown = set(changes) - set(SETTINGS)
        if unknown:
            raise TypeError(f"unknown parameter(s): {', '.join(sorted(unknown))}")
        old = dataclasses.asdict(self)
        new = {**old, **changes}
        for name, declared in SETTINGS.items():
            if name in changes or not declared.requires:
                continue
            key = declared.requires[0].option
            if (
                not declared.applies(new)
                or not declared.applies(old)
                or (isinstance(declared.default, dict) and old[key] != new[key])
            ):
                new[name] = None  # dropped, or the option's default
        return SegmentationParams(**new)

    def applied(self) -> dict[str, Any]:
        """The settings that apply (not None for want of their option), by name."""
        return {
            name: getattr(self, name)
            for name, declared in SETTINGS.items()
            if declared.applies(dataclasses.asdict(self))
        }


def _applies(name: str, values: Mapping[str, Any]) -> bool:
    declared = SETTINGS.get(name)
    return declared is None or declared.applies(values)


def _unmet(declared: Setting, values: Mapping[str, Any]) -> list[Requirement]:
    """The requirements of ``declared`` that ``values`` do not meet, from the nearest option
    down to the one to set first (an option that is itself not chosen: its own)."""
    for requirement in declared.requires:
        if not requirement.holds(values):
            option = SETTINGS.get(requirement.option)
            if option is not None and not option.applies(values):
                return [requirement, *_unmet(option, values)]
            return [requirement]
    return []


def _complete(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with the defaults of the options chosen, checked (ValueError)."""
    for name, declared in SETTINGS.items():  # options before the settings that need them
        value = values[name]
        if declared.applies(values):
            if value is None and not declared.optional:
                value = values[name] = declared.default_for(values)
            declared.check(value)
        elif value is not None:
            unmet = _unmet(declared, values)
            needs = ", which needs ".join(r.words() for r in unmet)
            first = unmet[-1].option
            raise ValueError(
                f"{name} applies only with {needs} (here {first} is {values[first]!r}); "
                f"set {first} to use {name}, or leave {name} out"
            )
    if values["min_classes"] >= values["max_classes"]:
        raise ValueError(
            f"min_classes must be below max_classes ({values['max_classes']}): a prediction "
            "never has more classes than the network's filters, so training would stop at the "
            "first iteration; lower min_classes (0 turns the stopping rule off) or raise "
            f"max_classes; got {values['min_classes']!r}"
        )
    if values["merge"] in ("colour", "texture") and not (
        values["merge_threshold"] or values["max_segments"]
    ):
        raise ValueError(
            f"merge={values['merge']!r} needs merge_threshold > 0 or max_segments > 0 (with "
            "both 0 it joins nothing); set one, or merge='off'"
        )
    return values


def _declarations() -> dict[str, Setting]:
    declared = {}
    for f in dataclasses.fields(SegmentationParams):
        kinds = [word.strip() for word in str(f.type).split("|")]
        spec = f.metadata["setting"]
        optional = "None" in kinds and not spec.requires
        declared[f.name] = dataclasses.replace(spec, name=f.name, kind=kinds[0], optional=optional)
    return declared


#: Every setting's declaration, by name, in the order of the fields (groups in order).
SETTINGS: dict[str, Setting] = _declarations()


#: Settings of layout version 1 of model files that kept their name.
_SAME_IN_VERSION_1 = (
    "max_iter",
    "n_conv",
    "lr",
    "momentum",
    "continuity_weight",
    "seed",
    "device",
    "precision",
)


def settings_of_version_1(old: Mapping[str, Any]) -> dict[str, Any]:
    """The settings that a model file of layout version 1 names, by today's names.

    Version 1 kept every setting flat: ``n_channels`` (the filters: ``max_classes``),
    ``min_labels``, ``superpixel_graph_scale`` (0: SLIC), ``graph_scale`` (``cut_scale``),
    ``connected_components``, ``boundary`` with ``merge_threshold`` (0: no merge), and
    settings that went unused under other choices.
    """
    new = {name: old[name] for name in _SAME_IN_VERSION_1 if name in old}
    new["max_classes"] = old["n_channels"]
    new["min_classes"] = old["min_labels"]
    if old.get("superpixel_graph_scale", 0):
        new.update(superpixels="graph", superpixel_scale=old["superpixel_graph_scale"])
    else:
        new.update(superpixels="slic", n_superpixels=old["n_superpixels"])
        new["compactness"] = old["compactness"]
    segments = any(
        old.get(name, 0)
        for name in (
            "connected_components",
            "merge_threshold",
            "max_segments",
            "min_segment_size",
            "min_segment_width",
            "graph_scale",
        )
    )
    if not segments:
        return {**new, "label_by": "class"}
    new.update(
        label_by="segment",
        cut_scale=old.get("graph_scale", 0.0),
        min_segment_size=old.get("min_segment_size", 0),
        min_segment_width=old.get("min_segment_width", 0),
    )
    if not (old.get("merge_threshold", 0) or old.get("max_segments", 0)):
        return {**new, "merge": "off"}
    merge = old.get("boundary", "colour")
    new.update(
        merge=merge,
        merge_threshold=old.get("merge_threshold", 0.0),
        max_segments=old.get("max_segments", 0),
        merge_interior_weight=old.get("merge_interior_weight", 0.0),
    )
    if merge == "texture":
        new["merge_region_weight"] = old.get("merge_region_weight", 0.0)
        new["spectral_weight"] = old.get("spectral_weight", 0.0)
        if new["spectral_weight"]:
            new["premerge_threshold"] = old.get("premerge_threshold", 0.0)
    return new


def _is_int(value: Any) -> bool:
    """Python and numpy integers, not bools (True is not a number of iterations)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def _is_real(value: Any) -> bool:
    """Finite Python and numpy numbers, not bools: inf or nan would train to nonsense."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool | np.bool_):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond float's range
        return False


def _number(value: float) -> str:
    if value == 2**64 - 1:
        return "2**64 - 1"
    return f"{value:g}"


def _preset(name: str) -> SegmentationParams:
    return SegmentationParams(
        **{key: s.presets[name] for key, s in SETTINGS.items() if name in s.presets}
    )


#: Named parameter sets. ``paper`` is the algorithm as published, with the public demo's
#: stopping rule (where the demo departs from the paper, see benchmarks/demo_loop.py).
#: ``objects``: the ``default``'s training on each image's own contrast, stopping at 6
#: classes, one label per object (nucleus, cell) with background 0; chosen on the DSB 2018
#: ``dev`` nuclei (docs/benchmarks.md).
#: ``default``, measured on BSDS500 train and val (docs/benchmarks.md): a shorter training
#: with fewer filters and SLIC superpixels that follow edges; its segments cut further along
#: graph-based segments, then joined again across boundaries that are weak in colour and
#: texture, judged against the texture inside the segments and against how alike the two
#: segments' colour and texton histograms are, and globalised by a spectral cue over the
#: segments, computed again after a first merge.
PRESETS: dict[str, SegmentationParams] = {name: _preset(name) for name in PRESET_NAMES}


# --- docs/parameters.md -------------------------------------------------------------------

_DOC_HEAD = """\
# Parameters

<!-- Made by `python -m napari_unsupervised_segmentation.core.params > docs/parameters.md`
from the declarations in core/params.py; edit those, not this file. -->

Three presets:

- `paper` is the published algorithm (Kanezaki, ICASSP 2018) with the public demo's stopping
  rule: 100 filters, SLIC with 10000 superpixels and compactness 100, at most 500 iterations,
  one label per class of the network. Where the public demo departs from the paper, the
  preset follows the paper (Xavier-uniform initialisation, SLIC on the RGB image, the last
  iteration's prediction; see `benchmarks/demo_loop.py`).
- `default`, used by `segment`, the widget and the command line unless told otherwise, trains
  briefly (at most 160 iterations) with 32 filters and SLIC superpixels that follow edges
  (3000, compactness 10), then post-processes the segments: it cuts them along graph-based
  segments, removes specks, joins touching segments across weak colour-and-texture boundaries
  in two merges, and removes specks and thin rims last ([how-it-works.md](how-it-works.md)).
  What that buys on BSDS500, and how its values were chosen: [benchmarks.md](benchmarks.md).
- `objects`, for nuclei and cells in microscopy, trains as the `default` does on each
  image's own contrast (`stretch_contrast`), stops at 6 classes and gives one label per
  object, background 0 (`label_by="object"`; see
  [how-it-works.md](how-it-works.md#objects-the-objects-preset)). Its values were chosen on
  the DSB 2018 `dev` nuclei: [benchmarks.md](benchmarks.md#nuclei-dsb-2018-dev).

Every setting can be overridden on top of either: as keyword arguments in Python
(`segment(image, "paper", max_iter=100)`), as flags on the command line (`--max-iter 100`),
or in the widget (the basic controls, and the collapsed groups below them). Settings are
checked when given (numpy numbers are fine; infinities, NaN and out-of-range values raise a
`ValueError` that names the setting), so a bad value fails before any training.

Some settings belong to an option: `n_superpixels` and `compactness` to
`superpixels="slic"`, `superpixel_scale` to `superpixels="graph"`, the post-processing
settings to `label_by="segment"`, the merge's settings to a `merge`, `premerge_threshold` to a
`spectral_weight` above 0. While their option is not chosen they are `None`, and giving one
raises a `ValueError` that names the option it needs. Choosing an option (e.g.
`segment(image, merge="colour")`) gives its settings their defaults under that option
(below, "colour: 2, texture: 0.435") unless they are given too, and drops the settings of the
option left. A `-` in a preset's column: the setting does not apply in that preset.
"""

_DOC_TAIL = """\
## Which settings to change

- **Fewer or more segments**: `merge_threshold` (higher: fewer, larger segments; move
  `premerge_threshold` with it), or `max_segments` when you know roughly how many regions
  there are. With the `paper` preset: `min_classes` and `max_iter`.
- **Faster**: `max_iter` (each iteration costs about the same), `n_superpixels`, or a GPU
  (`device`, `precision="tf32"` or `"bf16"`).
- **Less memory**: `max_classes` (memory grows with it; see
  [python-api.md](python-api.md#memory-check)).
- **Another result from the same image**: `seed` (-1 in the widget, `None` in Python, `none`
  on the command line: a fresh random start each run).
- **Microscopy channels**: the `default` takes any number of channels; its boundary
  strength takes the strongest channel's edge, so an edge seen in one stain counts fully.
"""


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _default_words(declared: Setting) -> str:
    if isinstance(declared.default, dict):
        return ", ".join(f"{key}: {_cell(v)}" for key, v in declared.default.items())
    return _cell(declared.default)


#: The presets of the tables' columns, in order.
DOC_PRESETS = ("paper", "default", "objects")


def parameters_markdown() -> str:
    """The text of ``docs/parameters.md``, made from the declarations."""
    lines = [_DOC_HEAD]
    for group, what in GROUPS.items():
        lines.append(f"## {group.capitalize()}\n\n{what[0].upper()}{what[1:]}.\n")
        lines.append(
            "| parameter | `paper` | `default` | `objects` | applies with | values (default "
            "under the option) | what it does |"
        )
        lines.append("|---|---|---|---|---|---|---|")
        for name, declared in SETTINGS.items():
            if declared.group != group:
                continue
            needs = " and ".join(f"`{r.words()}`" for r in declared.requires) or "always"
            values = declared.range_words()
            if declared.requires:
                values += f" ({_default_words(declared)})"
            text = declared.help + (f" {declared.details}" if declared.details else "")
            text = text.replace("|", "\\|")
            cells = " | ".join(_cell(getattr(PRESETS[p], name)) for p in DOC_PRESETS)
            lines.append(f"| `{name}` | {cells} | {needs} | {values} | {text} |")
        lines.append("")
    lines.append(_DOC_TAIL)
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(parameters_markdown())
