"""The name service: ``GET /`` answers ``<Name> (from <hostname>)`` with a random first name."""
