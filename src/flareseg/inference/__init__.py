"""Prediction: load a model directory, run the cascade, write masks. Never imports training code."""
