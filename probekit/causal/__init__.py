"""Causal tests of what the probes read: activation patching over minimal pairs and interventions along
probe directions (``probekit patch``, ``probekit intervene``). :mod:`probekit.causal.edits` runs a model with
activations read or replaced at TransformerLens hook names."""
