#!/usr/bin/env bash
# Makes the secrets compose.yaml reads, in deploy/secrets/ (git-ignored), once: a file
# that exists is kept, so running it again never changes a password or the master key.
#
#   deploy/secrets.sh && docker compose -f deploy/compose.yaml up --build
#
# Needs openssl. The directory is private to you (0700); the files in it are readable
# (0644) because compose mounts them as they are, without swarm's uid/mode options, and
# the containers read them as their own users (Tobira's 10001, PostgreSQL's 999).
set -euo pipefail

DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/secrets"
install -d -m 0700 "$DIR"
cd "$DIR"

# new NAME COMMAND...: writes COMMAND's output to NAME unless NAME exists.
new() {
  local name="$1"
  shift
  if [[ ! -e "$name" ]]; then
    "$@" >"$name.tmp"
    chmod 0644 "$name.tmp"
    mv "$name.tmp" "$name"
    echo "made deploy/secrets/$name"
  fi
}

random_hex() { openssl rand -hex 24 | tr -d '\n'; }
# keys.master_key: 32 random bytes, base64url without padding (43 characters).
master_key() { openssl rand -base64 32 | tr '+/' '-_' | tr -d '=\n'; }

new postgres_password random_hex
new redis_password random_hex
new database_url printf 'postgres://tobira:%s@postgres:5432/tobira' "$(cat postgres_password)"
new ephemeral_url printf 'redis://:%s@redis:6379' "$(cat redis_password)"
new master_key master_key
new marketplace_client_secret random_hex

# Tobira sends mail over SMTP with STARTTLS only (plain text is allowed to localhost
# alone), so the mail catcher gets a certificate from a CA made here, and Tobira trusts
# that CA beside the system's (SSL_CERT_DIR in compose.yaml).
if [[ ! -e mailpit.crt ]]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj '/CN=Tobira compose mail CA' \
    -keyout mail-ca.key -out mail-ca.crt 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj '/CN=mailpit' \
    -keyout mailpit.key -out mailpit.csr 2>/dev/null
  printf 'subjectAltName=DNS:mailpit\nextendedKeyUsage=serverAuth\n' >mailpit.ext
  openssl x509 -req -in mailpit.csr -CA mail-ca.crt -CAkey mail-ca.key -CAcreateserial \
    -days 825 -extfile mailpit.ext -out mailpit.crt 2>/dev/null
  # The CA signs nothing else: its key is not kept.
  rm -f mail-ca.key mail-ca.srl mailpit.csr mailpit.ext
  chmod 0644 mail-ca.crt mailpit.crt mailpit.key
  install -d -m 0755 mail-ca
  mv mail-ca.crt mail-ca/
  echo "made deploy/secrets/mail-ca/mail-ca.crt and deploy/secrets/mailpit.{crt,key}"
fi
