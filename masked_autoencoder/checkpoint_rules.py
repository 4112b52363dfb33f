"""What a model tells a checkpoint loader about itself, so that loaders never guess a model's nature from key names."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CheckpointRules:
    """A model's declaration of how checkpoints map onto it (read by ``hub``; see each model's ``checkpoint_rules``)."""

    learned_tables: tuple[str, ...] = ()
    """Position tables the model learns: one stored for another grid is interpolated (bicubic). Every other
    table is the fixed sin-cos one, regenerated exactly for the model's grid."""
    fresh: tuple[str, ...] = ()
    """Key prefixes of the model that a checkpoint may lack, or hold with another shape: they start freshly
    initialised by design (a classifier's new head)."""
    unused: tuple[str, ...] = ()
    """Key prefixes of checkpoints the model has no place for by design (a decoder, for an encoder): dropped."""
    settings: tuple[str, ...] = ()
    """Config fields that change what the weights compute: a checkpoint that records another value is refused."""
