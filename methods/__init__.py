"""Built-in continual-learning methods, one module each.

Nothing is imported here: bench/registry.py reads which module registers which name and
imports a module the first time its method is used (so `bench list` needs no torch).
"""
