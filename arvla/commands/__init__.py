"""The ``arvla`` subcommands: argument parsing and exit codes, one module per command, over the
library functions of the layers below (which hold no argparse)."""
