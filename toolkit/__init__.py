"""edgekd's training side: data, models, distillation, pipeline, CLI and reports."""

__version__ = "0.1.0"
