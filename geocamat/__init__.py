"""geocamat: CAM-guided adversarial training (CAMAT) for land-use maps and object inventories."""

__version__ = "0.1.0"
