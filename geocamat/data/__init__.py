"""Data: the user's imagery and labels as TorchGeo datasets, splits and samplers."""
