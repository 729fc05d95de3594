#!/bin/sh
# Makes a throwaway PKI for the TLS tests in directory $1 (created if needed),
# with the openssl command-line tool, at test time: no private key is ever
# committed. Keys are EC P-256 (fast to make). Files:
#   ca.pem ca.key            test CA
#   server.pem server.key    leaf for localhost, 127.0.0.1 and ::1, signed by the CA
#   expired.pem expired.key  like server, but its validity ended a day ago
#   wrongname.pem wrongname.key   valid, but for example.invalid only
#   client.pem client.key    client certificate (mutual TLS), signed by the CA
#   other-ca.pem other-ca.key   a CA nobody trusts
#   rogue-client.pem rogue-client.key   client certificate from other-ca
set -eu
dir=${1:?usage: make_certs.sh DIR}
mkdir -p "$dir"
cd "$dir"

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

ca() {  # name CN
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -out "$1.pem" -days 2 -subj "/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}

leaf() {  # name CN issuer days extensions
  key "$1.key"
  openssl req -new -key "$1.key" -out "$1.csr" -subj "/CN=$2" 2>/dev/null
  printf '%s\n' "$5" > "$1.ext"
  # -days -1: notAfter before "now", the simplest expired certificate the CLI makes.
  openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -CAcreateserial -days "$4" \
    -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}

server_ext='basicConstraints=CA:FALSE
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1'
wrongname_ext='basicConstraints=CA:FALSE
extendedKeyUsage=serverAuth
subjectAltName=DNS:example.invalid'
client_ext='basicConstraints=CA:FALSE
extendedKeyUsage=clientAuth'

ca ca "wscore test CA"
ca other-ca "untrusted test CA"
leaf server localhost ca 2 "$server_ext"
leaf expired localhost ca -1 "$server_ext"
leaf wrongname example.invalid ca 2 "$wrongname_ext"
leaf client "wscore test client" ca 2 "$client_ext"
leaf rogue-client "rogue client" other-ca 2 "$client_ext"
rm -f ./*.srl
