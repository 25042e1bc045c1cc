"""The lab: test hosts in network namespaces, optionally joined through an impairment relay.

- `l2fast.lab.state`: what a lab is (LabSpec), its derived names and its record on disk;
- `l2fast.lab.netns`: building, removing and inspecting a lab;
- `l2fast.lab.relay`: the relay process that forwards frames with seeded faults (C pump in
  csrc/relay.c, bound by l2fast.native.relay);
- `l2fast.lab.iproute`, `l2fast.lab.processes`: the commands and processes the lab drives;
- `l2fast.lab.cli`: `l2fast lab up|down|exec|status`.
"""
