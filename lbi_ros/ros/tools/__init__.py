"""ROS-side tooling that the shipped node does not import: demo graph, player, relay, recorder, node benchmark."""
