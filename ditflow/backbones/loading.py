"""What loading a pipeline needs besides diffusers' from_pretrained: quiet libraries and a check that every weight
its config asks for was in its files."""
from __future__ import annotations


def quiet_libraries() -> None:
    """Our own progress goes to stderr through rich; the libraries' loading bars would only add noise."""
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    for lib in (dlog, tlog):
        lib.set_verbosity_error()
        lib.disable_progress_bar()


def check_loaded(pipe, folder) -> None:
    """Every weight a submodel's config asks for was in its files: diffusers leaves the missing ones on the meta
    device (a config.json edited to more layers than the weights hold), which fails later as an internal error."""
    import itertools

    import torch

    from ..errors import ModelUnavailable

    for name, part in pipe.components.items():
        if isinstance(part, torch.nn.Module) and any(t.is_meta for t in itertools.chain(part.parameters(), part.buffers())):
            raise ModelUnavailable(f"{folder}/{name}: its weights do not hold everything its config.json describes "
                                   f"(e.g. more layers than were saved): the config and the weights disagree")
