#!/bin/bash
# bench/fanout_ab.sh [MTU] [REPS] [bench|folder|file]: the receiving fanout group off
# (L2FAST_FANOUT=0) against on (the default); bench/env_ab.sh does the work, see its --help.
#   sudo bench/fanout_ab.sh 1500 3
#   sudo bench/fanout_ab.sh 9000 2 folder
exec "$(dirname "$0")/env_ab.sh" L2FAST_FANOUT=0 "$@"
