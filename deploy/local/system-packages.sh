#!/usr/bin/env bash
# The Debian packages the test suite runs as real peers: dovecot (an IMAP server for the IMAP
# poller's tests) and chromium (the chat widget's browser test). Installs what is missing
# with apt-get when it can (root, or sudo without a password); otherwise says what to run.
set -euo pipefail

declare -A wanted=([/usr/sbin/dovecot]=dovecot-imapd [/usr/bin/chromium]=chromium)
missing=()
for path in "${!wanted[@]}"; do
    [[ -x "$path" ]] || missing+=("${wanted[$path]}")
done
(( ${#missing[@]} == 0 )) && exit 0

if [[ $(id -u) -eq 0 ]]; then
    run=()
elif sudo -n true 2>/dev/null; then
    run=(sudo -n)
else
    echo "The tests need these Debian packages: ${missing[*]}" >&2
    echo "Install them with: sudo apt-get install --no-install-recommends ${missing[*]}" >&2
    exit 1
fi
echo "installing ${missing[*]} (apt-get)"
export DEBIAN_FRONTEND=noninteractive
"${run[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
    || { "${run[@]}" apt-get update -q >/dev/null && \
         "${run[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }
