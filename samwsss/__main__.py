"""``python -m samwsss`` runs the command line."""

from samwsss.cli import main

if __name__ == "__main__":
    main()
