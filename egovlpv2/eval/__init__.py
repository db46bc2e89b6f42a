"""Downstream evaluation (EgoMCQ, EK-100 MIR, Charades-Ego), fine-tuning and feature extraction."""
