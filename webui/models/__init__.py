"""Models on disk: listing, name lookup and loading of each kind."""
