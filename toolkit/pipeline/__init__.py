"""The stages, each a function on a run directory (`toolkit.rundir`) reading what the last one wrote, and
`run`: the sequence of them that `edgekd run` and each sweep trial call."""
