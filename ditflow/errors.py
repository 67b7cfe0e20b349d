"""Typed errors. The CLI maps each kind to a one-line message and its own exit code."""
from __future__ import annotations


class DitflowError(Exception):
    """Base of every error a user can cause; the message says what is wrong and what to do."""

    exit_code = 1


class InputError(DitflowError):
    """A bad argument, file, video or size."""

    exit_code = 2


class ArtifactNotFound(DitflowError):
    exit_code = 3


class AmbiguousHash(DitflowError):
    exit_code = 3


class IncompatibleArtifact(DitflowError):
    """An artifact of the wrong kind, or made with another model or size than this run uses."""

    exit_code = 4


class CorruptArtifact(DitflowError):
    """An artifact whose payload no longer matches its recorded checksum."""

    exit_code = 5


class ModelUnavailable(DitflowError):
    """Weights (the video model, CLIP, CoTracker) that are not on this machine."""

    exit_code = 6


class OutputError(DitflowError):
    """A file or folder that could not be written (full disk, no permission...); nothing partial is left."""

    exit_code = 7


class NonFiniteResult(DitflowError):
    """A latent, AMF or decoded video that holds NaN or infinite values: the stage stops (exit 1, a stage
    failed) and publishes nothing, since NaN pixels would decode to a black video cached as a success."""

    exit_code = 1
