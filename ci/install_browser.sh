#!/usr/bin/env bash
# Install Debian's Chromium for the JupyterLab browser test (tests/tools/test_lab.py) and
# `make lab` users who want it. Idempotent: does nothing when /usr/bin/chromium is present.
# Never downloads a browser build (no `playwright install`): only the distribution package.
# When it cannot install (not root, no apt-get, no network), it says why on one line and
# exits 0, so the browser test skips with that reason instead of failing the whole run.
# Before installing it says what and how to skip it: SKIP_BROWSER=1 (`SKIP_BROWSER=1 make
# test`) installs nothing, and the browser tests, which run this script themselves when the
# browser is missing, skip with that reason (its last line).
set -uo pipefail

BROWSER=${D2L_CHROMIUM:-/usr/bin/chromium}  # D2L_CHROMIUM: tests only
if [[ -x "$BROWSER" ]]; then
    echo "install_browser: $BROWSER already present, nothing to do"
    exit 0
fi
if [[ -n "${SKIP_BROWSER:-}" ]]; then
    echo "install_browser: SKIP_BROWSER=$SKIP_BROWSER: chromium not installed; the browser tests" \
         "(tests/tools/test_lab.py, test_book.py, test_feedback_page.py) are skipped"
    exit 0
fi
echo "install_browser: $BROWSER is missing: installing Debian's chromium and fonts-dejavu-core" \
     "with apt-get (as root, or with sudo) for the browser tests (tests/tools/test_lab.py," \
     "test_book.py, test_feedback_page.py); to skip it: SKIP_BROWSER=1 make test"
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_browser: cannot install chromium: no apt-get on this system (not Debian/Ubuntu);" \
         "the JupyterLab browser test will be skipped"
    exit 0
fi
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO=(sudo -n)
    else
        echo "install_browser: cannot install chromium: not root and no passwordless sudo;" \
             "run 'sudo apt-get install chromium' yourself, or the JupyterLab browser test is skipped"
        exit 0
    fi
fi
# Debian ships the browser as `chromium`; Ubuntu's `chromium` is a snap stub, which does not
# provide /usr/bin/chromium and is caught by the final check below.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
how="as root"
[[ ${#SUDO[@]} -gt 0 ]] && how="with sudo"
echo "install_browser: running apt-get update and apt-get install chromium fonts-dejavu-core" \
     "$how (once; takes a minute)"
if ! "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >"$log" 2>&1; then
    echo "install_browser: cannot install chromium: 'apt-get update' failed (no network?):" \
         "$(grep -m1 -iE 'err|fail|could not' "$log" || tail -n1 "$log")"
    exit 0
fi
if ! "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends chromium fonts-dejavu-core >"$log" 2>&1; then
    echo "install_browser: cannot install chromium: 'apt-get install chromium' failed:" \
         "$(grep -m1 -iE '^E:' "$log" || tail -n1 "$log")"
    exit 0
fi
if [[ -x "$BROWSER" ]]; then
    echo "install_browser: installed $("$BROWSER" --version 2>/dev/null || echo chromium)"
else
    echo "install_browser: apt-get installed chromium but $BROWSER is missing" \
         "(a snap stub?); the JupyterLab browser test will be skipped"
fi
exit 0
