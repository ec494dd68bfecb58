"""Small in-process fake servers that follow each API's documentation (see each module's docstring)."""
