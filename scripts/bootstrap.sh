#!/usr/bin/env bash
# Set up a development machine (Debian/Ubuntu, Python 3.11): system packages, virtualenv,
# smevbus with its dev extras. Safe to run again; does only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
VENV=${VENV:-.venv}

# xmlsec1 (the command-line tool) and the python-xmlsec binding (a dev extra) are the
# independent verifiers the tests check our signatures against, and the baseline of
# benchmarks/crypto.py; smevbus itself does not use them at run time. pkg-config and
# libxmlsec1-dev let pip build the binding from source where no wheel fits the platform.
# libengine-gost-openssl is OpenSSL's gost engine: GOST R 34.10-2012 signatures and
# Streebog (gateway/crypto/gost); the runtime needs it only for GOST keys.
# prometheus brings promtool, which tests deploy/prometheus/alerts.yml (Debian packages
# promtool only with the server; on a machine with systemd that also enables a Prometheus on :9090).
# chromium is the headless browser the /ui test drives through playwright (which cannot
# download its own browsers here). gcc and the Python headers compile the SMEV
# transform's C scanner (gateway/crypto/_smev_fast.c; without them it runs in Python).
need=()
for pkg in xmlsec1 pkg-config libxmlsec1-dev libxml2-dev libengine-gost-openssl prometheus chromium gcc; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if command -v "$PYTHON" >/dev/null 2>&1 && ! "$PYTHON" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
  need+=("$PYTHON-dev")
fi
if ((${#need[@]})); then
  echo "bootstrap: installing system packages: ${need[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "bootstrap: $PYTHON not found; install Python 3.11 (apt-get install python3.11 python3.11-venv)" >&2
  exit 1
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip 2>&1 | grep -v "is ignored" || true
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 | grep -v "is ignored" || true
"$VENV/bin/python" -c "import gateway, xmlsec, lxml" # fail loudly if the install did not work
touch "$VENV/.installed"
