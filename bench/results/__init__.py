"""Results: the run store on disk, tables, seed aggregates, plots and the leaderboard."""
