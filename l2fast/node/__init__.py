"""The sans-IO protocol core of an l2fast node: discovery, sessions, control stream, chat, ping.

Nothing here touches a socket, a thread or the real clock. Every state machine takes frames and
the current time (float seconds, monotonic) and hands back frames to send, a timer deadline and
events (STYLE.md §1). `NodeEngine` in `l2fast.node.node` combines them; the daemon and the CLI
are adapters that move its frames to and from a raw socket.
"""
