"""Experiments that drive the engine: one run (runner), seed/order sweeps, Optuna studies."""
