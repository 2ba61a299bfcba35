"""Capsule people: the parametric capsule body and its numpy analytic ray-casting renderer."""
