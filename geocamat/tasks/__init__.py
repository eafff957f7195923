"""Lightning modules: the training step is the model's business, the loop and devices the Trainer's."""
