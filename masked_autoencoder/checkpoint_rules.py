"""What a model tells a checkpoint loader about itself, so that loaders never guess a model's nature from key names."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CheckpointRules:
    """A model's declaration of how checkpoints map onto it (read by ``hub``; see each model's ``checkpoint_rules``).

    Every key name the loader acts on comes from here (and the constructor options from the model's
    ``checkpoint_options`` / ``options_from_state_dict``): adding a model class never means editing ``hub``.
    """

    position_tables: tuple[str, ...] = ()
    """Keys of the (1, 1 + L, D) position tables, class row first: one stored for another grid is fitted."""
    learned_tables: tuple[str, ...] = ()
    """Position tables the model learns: one stored for another grid is interpolated (bicubic). Every other
    table is the fixed sin-cos one, regenerated exactly for the model's grid."""
    fresh: tuple[str, ...] = ()
    """Key prefixes of the model that a checkpoint may lack, or hold with another shape: they start freshly
    initialised by design (a classifier's new head, a detection backbone's relative position biases)."""
    fine_tuned_keys: tuple[str, ...] = ()
    """Key prefixes that only a fine-tuned checkpoint holds (a classifier's head): its position tables are
    learned ones, interpolated for another grid, never regenerated."""
    unused: tuple[str, ...] = ()
    """Key prefixes of checkpoints the model has no place for by design (a decoder, for an encoder): dropped."""
    settings: tuple[str, ...] = ()
    """Config fields that change what the weights compute: a checkpoint that records another value is refused."""
    shapes: tuple[str, ...] = ()
    """Config fields that set the shapes of the weights: a checkpoint that records other values cannot load, even
    with ``strict=False``; the refusal names them with the disagreeing ``settings``."""
    foreign: tuple[str, ...] = ()
    """Key prefixes that mark a checkpoint of another kind, which the model refuses (with ``foreign_hint``)."""
    foreign_hint: str = ""
    """What a checkpoint with ``foreign`` keys is, and what to load it with."""
    input_filters: tuple[str, ...] = ()
    """Weights over the input channels, (D, C, ...): adapted when RGB weights meet another channel count."""
    pixel_outputs: tuple[str, ...] = ()
    """Weights whose rows are pixels in :func:`patchify` order, (P_h*P_w*C, ...): adapted likewise."""
