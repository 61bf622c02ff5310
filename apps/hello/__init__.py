"""The hello service: ``GET /`` answers ``Hello (from <hostname>) <name's answer>``."""
