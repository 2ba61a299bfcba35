"""Drawing people: capsule bodies (numpy ray casting) and mesh bodies (skinned, clothed, OpenGL), on shared backgrounds."""
