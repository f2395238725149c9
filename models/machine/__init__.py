"""This machine: the hardware probe, energy meters."""
