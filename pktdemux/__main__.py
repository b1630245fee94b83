"""``python -m pktdemux``: the command line."""
from .cli import main

main()
