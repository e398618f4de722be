"""The `edgekd` command line: one typer command per stage."""
