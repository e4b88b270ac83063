"""`python -m mediqa_cli` runs the `mediqa` command (handy without the console script on PATH)."""

from mediqa_cli.cli import main

main()
