"""The l2fast wire format (docs/PROTOCOL.md): constants, header codec and frame payload codecs."""
