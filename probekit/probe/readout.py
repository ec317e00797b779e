"""Names of the hidden states a probe reads (TransformerLens 4 hook names), without torch.

- ``embed.hook_out``: the token embeddings;
- ``blocks.{i}.hook_resid_post``: the residual stream after block ``i`` (0-based), before the final norm;
- ``ln_final.hook_out``: the last block's output after the final norm, what the LM head reads.

:data:`READOUT` (``ln_final.hook_out``) is the default read-out of every probe: the paper's "last hidden
state" is the one the LM head reads. The last block before the final norm stays available as ``-1`` or
:data:`LAST_BLOCK`. :mod:`probekit.probe.hooks` reads them; figures and specs name them from here.
"""

from __future__ import annotations

import math
import re

EMBED = "embed.hook_out"
FINAL = "ln_final.hook_out"
READOUT = FINAL
"""The default read-out of the probes: after the final norm (paper §4, "the last hidden state")."""
LAST_BLOCK = "last_block"
"""Alias of the last block's resid_post (before the final norm), the same as layer ``-1``."""
RESID = re.compile(r"^blocks\.(\d+)\.hook_resid_post$")


def resid_name(i: int) -> str:
    """The hook name of block ``i``'s residual stream (before the final norm)."""
    return f"blocks.{i}.hook_resid_post"


def readout_depth(name) -> float:
    """Where hook ``name`` sits, for ordering: -1 for the embeddings, ``i`` for block ``i``'s resid_post,
    infinity for ``ln_final.hook_out`` (after every block and the final norm); NaN for anything else."""
    if name == EMBED:
        return -1.0
    if name == FINAL:
        return math.inf
    m = RESID.match(str(name))
    return float(m.group(1)) if m else math.nan


def readout_text(name) -> str:
    """Hook ``name`` in words, for captions, e.g. ``"ln_final.hook_out (after the final norm)"``."""
    if name == FINAL:
        return f"{FINAL} (after the final norm)"
    if name == EMBED:
        return f"{EMBED} (the token embeddings)"
    m = RESID.match(str(name))
    return f"{name} (block {m.group(1)}, before the final norm)" if m else str(name)
