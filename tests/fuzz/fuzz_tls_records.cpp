// libFuzzer: what a TLS 1.3 peer may send after the handshake, into an
// engine that protects records itself (src/net/tls.cpp, tls13.cpp), and into
// one that leaves them to OpenSSL. The input is a script: records of any
// content type and content sealed with the right key (so they get past the
// AEAD and reach the parsers behind it), plain data, bits flipped on the
// wire, garbage appended, and read buffers of every size. It must never
// crash or stall; what the receiver hands up must always be a prefix of the
// data that was sent as data (a flipped bit may fail the connection, never
// change a byte); once failed it hands up nothing more; and its answers
// (alerts, KeyUpdates) must not crash the sender either.
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "net/tls.hpp"

using namespace wscore::net;

namespace {

// The PEM text a write into a memory BIO made.
template <class Write>
std::string pem_text(Write write) {
  BIO* b = BIO_new(BIO_s_mem());
  write(b);
  char* p = nullptr;
  long n = BIO_get_mem_data(b, &p);
  std::string s(p, static_cast<size_t>(n));
  BIO_free(b);
  return s;
}

// One self-signed certificate for the whole run (the client does not verify).
struct Contexts {
  TlsContext client, server_own, server_ossl;
  Contexts() {
    EVP_PKEY* key = EVP_EC_gen("P-256");
    X509* x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("fuzz"), -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    X509_sign(x, key, EVP_sha256());
    TlsServerConfig sc;
    sc.cert_pem = pem_text([&](BIO* b) { PEM_write_bio_X509(b, x); });
    sc.key_pem = pem_text([&](BIO* b) { PEM_write_bio_PrivateKey(b, key, nullptr, nullptr, 0, nullptr, nullptr); });
    X509_free(x);
    EVP_PKEY_free(key);
    TlsClientConfig cc;
    cc.insecure_skip_verify = true;
    std::string err;
    if (!client.init_client(cc, &err) || !server_own.init_server(sc, &err)) std::abort();
    sc.openssl_records = true;
    if (!server_ossl.init_server(sc, &err)) std::abort();
  }
};

struct Input {
  const uint8_t* p;
  size_t n;
  uint8_t byte() {
    if (n == 0) return 0;
    n--;
    return *p++;
  }
  bool empty() const { return n == 0; }
};

void move_all(TlsEngine& from, TlsEngine& to, std::string* got, size_t cap) {
  std::vector<uint8_t> wire, buf(cap);
  from.take_ciphertext(&wire);
  to.feed_ciphertext(wire.data(), wire.size());
  size_t n;
  while ((n = to.read_plaintext(buf.data(), cap)) > 0) got->append(reinterpret_cast<char*>(buf.data()), n);
}

bool is_prefix(const std::string& got, const std::string& sent) {
  return got.size() <= sent.size() && sent.compare(0, got.size(), got) == 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Contexts* ctx = new Contexts;
  Input in{data, size};
  bool own_server = !(in.byte() & 1);
  TlsEngine client, server;
  std::string err;
  if (!client.init_client(ctx->client, "localhost", &err)) std::abort();
  if (!server.init_server(own_server ? ctx->server_own : ctx->server_ossl, &err)) std::abort();
  std::string sent, got, back;
  for (int round = 0; round < 8; round++) {  // the handshake
    move_all(client, server, &got, 4096);
    move_all(server, client, &back, 4096);
  }
  if (client.state() != TlsState::open || server.state() != TlsState::open || !client.own_records() ||
      server.own_records() != own_server)
    std::abort();

  const uint8_t types[] = {23, 22, 21, 0, 20, 24};
  int ops = 0;
  while (!in.empty() && ops++ < 64) {
    uint8_t op = in.byte();
    std::vector<uint8_t> wire;
    switch (op % 6) {
      case 0:
      case 1: {  // one record of a chosen type; type 23 is data
        uint8_t type = types[in.byte() % sizeof types];
        size_t len = in.byte() % 48;
        if (op & 0x80) len += 16300;  // around the record size limit
        std::vector<uint8_t> body;
        for (size_t i = 0; i < len; i++) body.push_back(i < 48 ? in.byte() : static_cast<uint8_t>(i));
        if (len > 16384) len = 16384, body.resize(16384);
        if (!client.send_record(type, body.data(), body.size())) break;
        // What the receiver must make of it: the content type is the last
        // byte that is not zero (RFC 8446 5.4), so a record "sent" as type 0
        // may well be data.
        std::vector<uint8_t> inner = body;
        inner.push_back(type);
        while (!inner.empty() && inner.back() == 0) inner.pop_back();
        if (!inner.empty() && inner.back() == 23) sent.append(inner.begin(), inner.end() - 1);
        break;
      }
      case 2: {  // data through the ordinary path
        std::string s(static_cast<size_t>(in.byte()) * 97, static_cast<char>('a' + op % 26));
        if (client.write_plaintext(reinterpret_cast<const uint8_t*>(s.data()), s.size()) == s.size()) sent += s;
        client.flush();
        break;
      }
      case 3:
        client.set_rekey_interval(1 + in.byte() % 4);
        break;
      default:
        break;
    }
    client.take_ciphertext(&wire);
    if (op % 6 == 4 && !wire.empty()) wire[in.byte() % wire.size()] ^= static_cast<uint8_t>(1 + in.byte() % 255);
    if (op % 6 == 5)
      for (int i = in.byte() % 16; i > 0; i--) wire.push_back(in.byte());
    // Fed in pieces, read with a buffer of a chosen size.
    size_t cap = 1 + static_cast<size_t>(in.byte()) * 80;
    std::vector<uint8_t> buf(cap);
    size_t off = 0;
    while (off < wire.size()) {
      size_t k = std::min(wire.size() - off, 1 + static_cast<size_t>(in.byte()) * 64);
      server.feed_ciphertext(wire.data() + off, k);
      off += k;
      size_t m;
      int guard = 0;
      while ((m = server.read_plaintext(buf.data(), cap)) > 0) {
        if (m > cap || ++guard > 100000) std::abort();
        got.append(reinterpret_cast<char*>(buf.data()), m);
      }
    }
    if (!is_prefix(got, sent)) std::abort();
    if (server.state() == TlsState::failed && server.error().empty()) std::abort();
    move_all(server, client, &back, 1 + in.byte() % 20000);  // alerts, KeyUpdate answers
    if (!back.empty()) std::abort();  // the server never sent data
    if (server.state() == TlsState::failed || server.state() == TlsState::closed) {
      size_t before = got.size();
      uint8_t one[16];
      if (server.read_plaintext(one, sizeof one) != 0 || got.size() != before) std::abort();
      break;
    }
  }
  return 0;
}
