"""Training samples: virtual cameras, the 2D detector error model, and the dataset that combines mocap and rendering."""
