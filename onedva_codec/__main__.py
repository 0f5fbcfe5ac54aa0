"""`python -m onedva_codec ...` is the `odva` command."""

from .launch import main

main()
