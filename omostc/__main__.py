"""`python -m omostc` runs the command line, as the `omostc` script does."""

from omostc.cli import main

if __name__ == "__main__":
    main(prog_name="omostc")
