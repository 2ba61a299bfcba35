"""Public benchmarks (Human3.6M, MPI-INF-3DHP) in their array formats, read through a safe npz loader."""
