"""The github-oidc Pulumi project: run it from this directory (``pulumi up``).

A package only so that its ``__main__`` has a module name of its own next to the
Fargate program's ``__main__.py`` when the type checker reads the whole tree.
"""
