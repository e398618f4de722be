"""The four stages, each a function on a run directory (`toolkit.rundir`) reading what the last one wrote."""
