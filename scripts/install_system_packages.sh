#!/bin/sh
# System packages prunescope needs besides Python (called by `make setup`; safe to run again):
#   bubblewrap (`bwrap`): the sandbox in which generated code (humaneval, mbpp) runs, see
#   prunescope/tasks/sandbox_isolation.py.
# Present: nothing happens. Missing, as root with apt-get: installed. Otherwise: a note saying what to
# install, and setup carries on (the code tasks then refuse to run and say why).
set -u
missing=""
command -v bwrap >/dev/null 2>&1 || [ -x /usr/bin/bwrap ] || missing="$missing bubblewrap"
[ -z "$missing" ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "install_system_packages: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    if apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing >/dev/null; then
        exit 0
    fi
    echo "install_system_packages: warning: apt-get could not install$missing" >&2
else
    echo "install_system_packages: note: code tasks (humaneval, mbpp) need$missing; install it" \
         "(Debian/Ubuntu: sudo apt-get install bubblewrap; Fedora: sudo dnf install bubblewrap)," \
         "or set tasks.sandbox.isolation: none to run generated code without kernel isolation" >&2
fi
exit 0
