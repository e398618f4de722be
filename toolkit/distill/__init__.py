"""Distillation: losses, the training loop, and evaluation."""
