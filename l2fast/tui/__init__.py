"""`l2fast ui`: the full-screen terminal interface (peers, transfers, offers, chat).

`model` is sans-IO (STYLE.md §1): messages from the node and key presses go in; requests for
the node, send commands to start and the lines to draw come out. `screen` is the curses shell
around it: it owns the terminal, the node client and the `l2fast send` processes.
"""
