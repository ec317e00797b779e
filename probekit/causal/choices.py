"""The allowed settings of ``probekit intervene`` (no torch: the command's parser and the sweep config read them)."""

MODES = ("ablate", "steer")
"""What an intervention does along a direction: replace its component by a constant, or add a multiple of it."""
ABLATE_VALUES = ("mean", "zero")
"""The constant an ablation puts along the direction: the training states' mean projection, or 0."""
POSITIONS = ("all", "prompt")
"""Where an edit applies: every position, or only forwards of several tokens (the prompt's prefill)."""
MIN_RANDOM = 10
"""The issue's minimum number of random directions beside the probe direction (the default)."""
