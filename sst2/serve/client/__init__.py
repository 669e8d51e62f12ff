"""What answers files and texts with an export (SavedModel or OpenVINO artifact): loading
it, reading records, scoring files on Beam and publishing their output whole."""
