"""Built-in dataset adapters, one module each.

Nothing is imported here: bench/registry.py reads which module registers which name and
imports a module the first time its dataset is used.
"""
