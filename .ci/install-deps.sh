#!/usr/bin/env bash
# Installs the Debian packages the interop and reliability checks use, and
# those Go tests call: opendkim (TestOpenDKIMDifferential, TestSigningCorpus)
# and python3-dkim (dkimpy, with python3-nacl for Ed25519).
# Idempotent: skips apt when everything is present.
set -euo pipefail
pkgs=(swaks msmtp postfix opendkim opendkim-tools python3-dkim python3-aiosmtpd dnsmasq-base libsasl2-modules sasl2-bin iproute2 procps php-cli php-symfony-mailer haproxy openssl opendmarc util-linux unbound nsd ldnsutils pebble python3-jsonschema curl libssl-dev gcc)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# Debian starts the services it installs; the checks run their own.
for s in postfix opendkim haproxy opendmarc unbound nsd; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$s" 2>/dev/null; then systemctl stop "$s" || true; fi
done
echo "packages ok"
