"""Sweeps over the student and distillation settings (`edgekd sweep`)."""
