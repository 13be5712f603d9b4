"""Post-processing of predicted label maps."""
