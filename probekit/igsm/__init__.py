"""The iGSM data pipeline: world vocabulary -> Problem -> text, and text -> Problem -> verdicts and labels.

Everything here is pure Python (plus the standard library); no torch, no numpy at import time.
"""

from probekit.igsm.problem import ABSTRACT, INSTANCE, RNG, Param, Problem, Statement
from probekit.igsm.world import World, load_world

__all__ = ["ABSTRACT", "INSTANCE", "RNG", "Param", "Problem", "Statement", "World", "load_world"]
