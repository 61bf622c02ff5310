"""The services' runtime: environment parsing, JSON logs, serving with a drain on SIGTERM."""
