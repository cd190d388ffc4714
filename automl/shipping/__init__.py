"""What travels with a job to runners and nodes that share no folder with the submitter: the
objective's code package (:mod:`~automl.shipping.code`) and its data file (:mod:`~automl.shipping.data`).

What must stay true: both are content-addressed (a sha256 names each), stored in the job store at
submit, and fetched by hash where a job runs; importing this package loads no heavy library.
"""
