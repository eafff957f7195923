"""Inference: region -> windows -> parallel reads -> tiles on the device -> blending -> streamed writers."""
