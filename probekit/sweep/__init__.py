"""Sweeps: ``probekit run CONFIG.yaml`` and the results store that ``probekit figures`` reads.

- :mod:`.config` -- the typed sweep config (checkpoints, training runs, analyses and their grids), checked before
  anything runs;
- :mod:`.jobs` -- expansion into :class:`~.jobs.Job` objects with stable ``job_id`` (and the equivalent command);
- :mod:`.runners` -- the library spec and function of each job kind (what ``probekit train|eval|probe`` call);
- :mod:`.inputs` -- the fingerprint of the files a job reads (checkpoint, shards), part of its identity;
- :mod:`.store` -- the results store (one parquet file per finished job, merged ``results.parquet``);
- :mod:`.execute` -- running a job in-process, local workers (one per GPU) and submitit (Slurm);
- :mod:`.command` -- ``probekit run``.

Importing this package does not import torch or pandas.
"""
