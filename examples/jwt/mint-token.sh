#!/usr/bin/env bash
# Mint a JWT from the examples' local issuer (https://accounts.example.com,
# key signing-key.pem, public keys jwks.json — inlined in
# examples/shop/41-request-authentication.yaml).
#   examples/jwt/mint-token.sh [subject] [extra meshctl jwt mint flags…]
#   TOKEN=$(examples/jwt/mint-token.sh alice --claim groups='["admins"]')
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
sub="${1:-alice}"; shift || true
exec meshctl jwt mint --key "$here/signing-key.pem" --kid mesh-example \
  --iss https://accounts.example.com --sub "$sub" "$@"
