"""The smallest training run a test can afford: ``probekit train`` overrides for gpt2-tiny on op <= 2 problems,
single-threaded, no progress bar (importable from any test module: setup.cfg puts tests/ on the path)."""

TINY_RUN = [
    "model.name=gpt2-tiny",
    "data.max_op=2",
    "data.max_edge=12",
    "data.context=256",
    "data.max_drop_fraction=0.5",
    "data.length_check_samples=40",
    "data.batch_size=4",
    "data.workers=0",
    "run.log_every=1",
    "run.progress=false",
    "run.tensorboard=false",
    "run.threads=1",
]
