"""`bench grid`: a grid of runs (methods x seeds x orders x datasets) on one machine or on Slurm.

spec.py expands a spec into named runs, stages.py plans the T1 stage and trains T1 models,
worker.py runs one run (or T1 job) as a process, local.py and slurm.py launch them, status.py
says where every run is.
"""
