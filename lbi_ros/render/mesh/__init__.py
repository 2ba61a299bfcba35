"""Mesh people: Anny bodies retargeted to mocap, MakeHuman clothes and hair, textures, headless OpenGL raster."""
