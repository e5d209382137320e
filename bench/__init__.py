"""bench: a benchmark harness for continual user-representation learning.

It trains one user model on a sequence of tasks (next-item prediction, cross-domain
item recommendation, user-profile classification), records the performance matrix
R[i][j] after every task, and renders the comparison tables of Conure and TERACON.
"""

__version__ = "0.1.0"
