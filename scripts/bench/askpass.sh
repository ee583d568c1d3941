#!/bin/sh
# git's askpass for the baseline script: the user name, then the token, from the environment.
case "$1" in
  Username*) echo x-access-token ;;
  *) echo "$BENCH_GIT_TOKEN" ;;
esac
