"""What a PNG carries: infotext (its parse and build) and the PNG metadata itself."""
