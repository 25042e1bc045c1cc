"""`l2fast daemon`: one long-lived node on one interface, driven by the CLI over a Unix socket."""
