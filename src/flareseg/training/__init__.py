"""Training: cached stage samples, augmentation, losses, the loop, and the model directory it writes."""
