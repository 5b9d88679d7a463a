"""A study's results read back from its database; no Keras here, so these commands run anywhere.

`record` owns what a trial stores about itself; `frame` turns trials into tables; `export` writes
`export-best`'s files, `status` the `optimize status` text, `dashboard` serves optuna-dashboard and
`report/` writes the analysis; `formatting` is how values look to a person.

Nothing is imported here: `record` is read by the lowest layers (the search's retries, the training
history), and importing this package must not pull in the storage and table code above them.
"""
