"""2D person detection from the camera image: model-file reader, converted BlazePose networks, anchors/ROI, tracker."""
