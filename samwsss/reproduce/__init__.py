"""``samwsss reproduce``: the survey's Table 1 protocol as one plan of ordinary runs.

Modules (torch-free; import them directly):

- :mod:`samwsss.reproduce.published` -- the published figures the results are set beside
  (the survey's Table 1 rows 54-56, FMA-WSSS's Mask2Former).
- :mod:`samwsss.reproduce.plan` -- the steps of a dataset's plan, each a ``samwsss``
  command with its own run folder, and how to tell that a step is done.
- :mod:`samwsss.reproduce.estimates` -- the time a step is estimated to take, and where
  each figure comes from.
- :mod:`samwsss.reproduce.table` -- ``results.json`` / ``results.md``: our numbers beside
  the published ones.

The command itself (checks, running the steps, torchrun) is :mod:`samwsss.cli.reproduce`.
"""
