"""Motion capture: BVH parsing, the dataset's clips -> H36M-17 pose cache with a fixed split, pose sources."""
