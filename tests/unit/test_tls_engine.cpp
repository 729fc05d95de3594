// src/net/tls.cpp: a client engine and a server engine pumped into each
// other through memory. Every certificate is made here, in memory, at test
// time (no key is ever committed): a CA, an intermediate, leaves for names
// and IP addresses, an expired one, a client certificate.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
extern "C" {
#include <cmocka.h>
}

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "net/tls.hpp"

using namespace wscore::net;

// ------------------------------------------------------------ certificates

struct Pki {
  EVP_PKEY* key = nullptr;
  X509* cert = nullptr;
  Pki() = default;
  Pki(const Pki&) = delete;
  Pki& operator=(const Pki&) = delete;
  ~Pki() {
    X509_free(cert);
    EVP_PKEY_free(key);
  }
  std::string cert_pem() const {
    BIO* b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(b, cert);
    return drain(b);
  }
  std::string key_pem() const {
    BIO* b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, key, nullptr, nullptr, 0, nullptr, nullptr);
    return drain(b);
  }
  static std::string drain(BIO* b) {
    char* p = nullptr;
    long n = BIO_get_mem_data(b, &p);
    std::string s(p, static_cast<size_t>(n));
    BIO_free(b);
    return s;
  }
};

struct CertSpec {
  std::string cn;
  std::string san;  // "DNS:localhost,IP:127.0.0.1"; "" for none
  bool ca = false;
  long not_before = -3600;  // seconds from now
  long not_after = 86400;
};

static void add_ext(X509* x, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, x, nullptr, nullptr, 0);
  X509_EXTENSION* e = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  assert_non_null(e);
  assert_int_equal(X509_add_ext(x, e, -1), 1);
  X509_EXTENSION_free(e);
}

// issuer == nullptr: self-signed.
static void make_cert(Pki* out, const CertSpec& spec, const Pki* issuer) {
  static long serial = 1;
  out->key = EVP_EC_gen("P-256");
  assert_non_null(out->key);
  X509* x = X509_new();
  out->cert = x;
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
  X509_gmtime_adj(X509_getm_notBefore(x), spec.not_before);
  X509_gmtime_adj(X509_getm_notAfter(x), spec.not_after);
  X509_set_pubkey(x, out->key);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(spec.cn.c_str()), -1, -1,
                             0);
  X509* signer_cert = issuer ? issuer->cert : x;
  EVP_PKEY* signer_key = issuer ? issuer->key : out->key;
  X509_set_issuer_name(x, X509_get_subject_name(signer_cert));
  add_ext(x, signer_cert, NID_subject_key_identifier, "hash");
  add_ext(x, signer_cert, NID_authority_key_identifier, "keyid:always");
  if (spec.ca) {
    add_ext(x, signer_cert, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(x, signer_cert, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    add_ext(x, signer_cert, NID_basic_constraints, "CA:FALSE");
    add_ext(x, signer_cert, NID_ext_key_usage, "serverAuth,clientAuth");
  }
  if (!spec.san.empty()) add_ext(x, signer_cert, NID_subject_alt_name, spec.san.c_str());
  assert_true(X509_sign(x, signer_key, EVP_sha256()) > 0);
}

// One set for the whole run: key generation is the slow part.
struct World {
  Pki ca, other_ca, inter, leaf, leaf_by_inter, expired, client, client_other;
};
static World* W;

static int setup_world(void**) {
  W = new World;
  make_cert(&W->ca, {"wscore test CA", "", true}, nullptr);
  make_cert(&W->other_ca, {"somebody else's CA", "", true}, nullptr);
  make_cert(&W->inter, {"wscore test intermediate", "", true}, &W->ca);
  make_cert(&W->leaf, {"localhost", "DNS:localhost,DNS:*.example.test,IP:127.0.0.1"}, &W->ca);
  make_cert(&W->leaf_by_inter, {"localhost", "DNS:localhost"}, &W->inter);
  make_cert(&W->expired, {"localhost", "DNS:localhost", false, -2 * 86400, -86400}, &W->ca);
  make_cert(&W->client, {"client one", ""}, &W->ca);
  make_cert(&W->client_other, {"client two", ""}, &W->other_ca);
  return 0;
}

static int teardown_world(void**) {
  delete W;
  return 0;
}

// ------------------------------------------------------------ pumping

struct Pair {
  TlsContext cctx, sctx;
  TlsEngine client, server;
  std::string client_got, server_got;  // plaintext each side read
};

static TlsServerConfig server_cfg(const Pki& leaf, const Pki* chain = nullptr) {
  TlsServerConfig c;
  c.cert_pem = leaf.cert_pem() + (chain ? chain->cert_pem() : "");
  c.key_pem = leaf.key_pem();
  return c;
}

static TlsClientConfig client_cfg(const Pki& trust) {
  TlsClientConfig c;
  c.ca_pem = trust.cert_pem();
  return c;
}

static void setup_pair(Pair* p, const TlsClientConfig& cc, const TlsServerConfig& sc, const char* host) {
  std::string err;
  assert_true(p->cctx.init_client(cc, &err));
  assert_true(p->sctx.init_server(sc, &err));
  assert_true(p->client.init_client(p->cctx, host, &err));
  assert_true(p->server.init_server(p->sctx, &err));
  assert_int_equal(p->client.state(), TlsState::handshaking);
}

static void read_all(TlsEngine& e, std::string* into) {
  uint8_t buf[4096];
  size_t n;
  while ((n = e.read_plaintext(buf, sizeof buf)) > 0) into->append(reinterpret_cast<char*>(buf), n);
}

// Moves ciphertext both ways until neither side has anything to say.
// max_chunk > 0 splits each transfer into random small feeds.
static void pump(Pair* p, size_t max_chunk = 0) {
  std::mt19937 rng(42);
  for (int round = 0; round < 10000; round++) {
    bool moved = false;
    for (int dir = 0; dir < 2; dir++) {
      TlsEngine& from = dir == 0 ? p->client : p->server;
      TlsEngine& to = dir == 0 ? p->server : p->client;
      std::vector<uint8_t> wire;
      from.take_ciphertext(&wire);
      size_t off = 0;
      while (off < wire.size()) {
        size_t n = wire.size() - off;
        if (max_chunk) n = std::min(n, 1 + rng() % max_chunk);
        to.feed_ciphertext(wire.data() + off, n);
        off += n;
        read_all(to, dir == 0 ? &p->server_got : &p->client_got);
      }
      read_all(to, dir == 0 ? &p->server_got : &p->client_got);
      moved = moved || !wire.empty();
    }
    if (!moved) return;
  }
  fail_msg("pump did not settle");
}

static void write_str(TlsEngine& e, const std::string& s) {
  assert_int_equal(e.write_plaintext(reinterpret_cast<const uint8_t*>(s.data()), s.size()), s.size());
}

// ------------------------------------------------------------ tests

static void test_handshake_and_echo(void**) {
  Pair p;
  setup_pair(&p, client_cfg(W->ca), server_cfg(W->leaf), "localhost");
  // Written before the handshake: held, then sent once it is done.
  write_str(p.client, "GET / HTTP/1.1\r\n\r\n");
  assert_int_equal(p.client.pending_plaintext(), 18);
  pump(&p);
  assert_int_equal(p.client.state(), TlsState::open);
  assert_int_equal(p.server.state(), TlsState::open);
  assert_string_equal(p.client.protocol_version(), "TLSv1.3");
  assert_string_equal(p.client.alpn().c_str(), "http/1.1");
  assert_string_equal(p.server.alpn().c_str(), "http/1.1");
  assert_string_equal(p.server.server_name().c_str(), "localhost");
  assert_true(p.client.peer_certificate_present());
  assert_false(p.server.peer_certificate_present());
  assert_string_equal(p.server_got.c_str(), "GET / HTTP/1.1\r\n\r\n");
  write_str(p.server, "HTTP/1.1 101 Switching Protocols\r\n\r\n");
  pump(&p);
  assert_string_equal(p.client_got.c_str(), "HTTP/1.1 101 Switching Protocols\r\n\r\n");
  assert_string_equal(p.client.error().c_str(), "");
  assert_int_equal(p.client.pending_ciphertext(), 0);
  // Idle, neither engine keeps a ciphertext buffer (idle connections' memory).
  assert_int_equal(p.client.ciphertext_memory(), 0);
  assert_int_equal(p.server.ciphertext_memory(), 0);
}

static void test_wildcard_and_trailing_dot(void**) {
  {
    Pair p;
    setup_pair(&p, client_cfg(W->ca), server_cfg(W->leaf), "a.example.test");
    pump(&p);
    assert_int_equal(p.client.state(), TlsState::open);
  }
  {
    Pair p;  // a fully qualified name matches the same certificate
    setup_pair(&p, client_cfg(W->ca), server_cfg(W->leaf), "localhost.");
    pump(&p);
    assert_int_equal(p.client.state(), TlsState::open);
    assert_string_equal(p.server.server_name().c_str(), "localhost");
  }
  {
    Pair p;  // a wildcard covers one label only
    setup_pair(&p, client_cfg(W->ca), server_cfg(W->leaf), "a.b.example.test");
    pump(&p);
    assert_int_equal(p.client.state(), TlsState::failed);
    assert_string_equal(p.client.error().c_str(), "certificate verify failed: hostname mismatch");
  }
}

static void test_unknown_ca(void**) {
  Pair p;
  setup_pair(&p, client_cfg(W->other_ca), server_cfg(W->leaf), "localhost");
  pump(&p);
  assert_int_equal(p.client.state(), TlsState::failed);
  assert_string_equal(p.client.error().c_str(), "certificate verify failed: unable to get local issuer certificate");
  // The client's alert reached the server, which fails with the alert's name.
  assert_int_equal(p.server.state(), TlsState::failed);
  assert_string_equal(p.server.error().c_str(), "tlsv1 alert unknown ca");
  // A failed engine refuses writes and ignores input, without crashing.
  write_str(p.client, "");
  uint8_t b = 0;
  assert_int_equal(p.client.write_plaintext(&b, 1), 0);
  assert_int_equal(p.client.feed_ciphertext(&b, 1), TlsState::failed);
}

static void test_self_signed_server(void**) {
  Pair p;
  setup_pair(&p, client_cfg(W->ca), server_cfg(W->other_ca), "localhost");
  pump(&p);
  assert_int_equal(p.client.state(), TlsState::failed);
  assert_string_equal(p.client.error().c_str(), "certificate verify failed: self-signed certificate");
}

static void test_expired(void**) {
  Pair p;
  setup_pair(&p, client_cfg(W->ca), server_cfg(W->expired), "localhost");
  pump(&p);
  assert_int_equal(p.client.state(), TlsState::failed);
  assert_string_equal(p.client.error().c_str(), "certificate verify failed: certificate has expired");
  assert_string_equal(p.server.error().c_str(), "sslv3 alert certificate expired");
}

static void test_hostname_mismatch(void**) {
  Pair p;
  setup_pair(&p, client_cfg(W->ca), server_cfg(W->leaf), "evil.example.org");
  pump(&p);
  assert_int_equal(p.client.state(), TlsState::failed);
  assert_string_equal(p.client.error().c_str(), "certificate verify failed: hostname mismatch");
}

static void test_ip_addresses(void**) {
  {
    Pair p;  // IP SAN matches; an IP literal sends no SNI
    setup_pair(&p, client_cfg(W->ca), server_cfg(W->leaf), "127.0.0.1");
    pump(&p);
    assert_int_equal(p.client.state(), TlsState::open);
    assert_string_equal(p.server.server_name().c_str(), "");
  }
  {
    Pair p;  // an address the certificate does not list
    setup_pair(&p, client_cfg(W->ca), server_cfg(W->leaf), "::1");
    pump(&p);
    assert_int_equal(p.client.state(), TlsState::failed);
    assert_string_equal(p.client.error().c_str(), "certificate verify failed: IP address mismatch");
  }
  {
    Pair p;  // an IP literal is not matched against DNS names, nor a DNS name against IPs
    setup_pair(&p, client_cfg(W->ca), server_cfg(W->leaf_by_inter, &W->inter), "127.0.0.1");
    pump(&p);
    assert_string_equal(p.client.error().c_str(), "certificate verify failed: IP address mismatch");
  }
}

static void test_insecure_skip_verify(void**) {
  TlsClientConfig cc = client_cfg(W->other_ca);
  cc.insecure_skip_verify = true;
  Pair p;
  setup_pair(&p, cc, server_cfg(W->expired), "wrong.name");
  write_str(p.client, "hi");
  pump(&p);
  assert_int_equal(p.client.state(), TlsState::open);
  assert_string_equal(p.server_got.c_str(), "hi");
  assert_string_equal(p.server.server_name().c_str(), "wrong.name");  // SNI still sent
}

static void test_intermediate_chain(void**) {
  {
    Pair p;  // the server sends leaf + intermediate; the client trusts the root only
    setup_pair(&p, client_cfg(W->ca), server_cfg(W->leaf_by_inter, &W->inter), "localhost");
    pump(&p);
    assert_int_equal(p.client.state(), TlsState::open);
  }
  {
    Pair p;  // without the intermediate, the chain does not reach the root
    setup_pair(&p, client_cfg(W->ca), server_cfg(W->leaf_by_inter), "localhost");
    pump(&p);
    assert_string_equal(p.client.error().c_str(),
                        "certificate verify failed: unable to get local issuer certificate");
  }
}

static TlsServerConfig mtls_server() {
  TlsServerConfig sc = server_cfg(W->leaf);
  sc.verify_client = true;
  sc.ca_pem = W->ca.cert_pem();
  return sc;
}

static void test_mutual_tls(void**) {
  {
    Pair p;
    TlsClientConfig cc = client_cfg(W->ca);
    cc.cert_pem = W->client.cert_pem();
    cc.key_pem = W->client.key_pem();
    setup_pair(&p, cc, mtls_server(), "localhost");
    write_str(p.client, "x");
    pump(&p);
    assert_int_equal(p.server.state(), TlsState::open);
    assert_true(p.server.peer_certificate_present());
    assert_string_equal(p.server_got.c_str(), "x");
  }
  {
    // TLS 1.3: the client finishes its side first and learns of the refusal
    // from the server's alert, on its next read.
    Pair p;
    setup_pair(&p, client_cfg(W->ca), mtls_server(), "localhost");
    pump(&p);
    assert_int_equal(p.server.state(), TlsState::failed);
    assert_string_equal(p.server.error().c_str(), "peer did not return a certificate");
    assert_int_equal(p.client.state(), TlsState::failed);
    assert_string_equal(p.client.error().c_str(), "tlsv13 alert certificate required");
  }
  {
    Pair p;  // a certificate from a CA the server does not trust
    TlsClientConfig cc = client_cfg(W->ca);
    cc.cert_pem = W->client_other.cert_pem();
    cc.key_pem = W->client_other.key_pem();
    setup_pair(&p, cc, mtls_server(), "localhost");
    pump(&p);
    assert_int_equal(p.server.state(), TlsState::failed);
    assert_string_equal(p.server.error().c_str(), "certificate verify failed: unable to get local issuer certificate");
    assert_int_equal(p.client.state(), TlsState::failed);
    assert_string_equal(p.client.error().c_str(), "tlsv1 alert unknown ca");
  }
}

static void test_tls12(void**) {
  Pair p;
  TlsServerConfig sc = mtls_server();
  setup_pair(&p, client_cfg(W->ca), sc, "localhost");
  SSL_CTX_set_max_proto_version(p.sctx.native(), TLS1_2_VERSION);
  // Re-create the server engine so it picks the new limit up.
  std::string err;
  assert_true(p.server.init_server(p.sctx, &err));
  pump(&p);
  // In TLS 1.2 the missing client certificate fails the handshake on both sides.
  assert_int_equal(p.server.state(), TlsState::failed);
  assert_string_equal(p.server.error().c_str(), "peer did not return a certificate");
  assert_int_equal(p.client.state(), TlsState::failed);
  assert_string_equal(p.client.error().c_str(), "sslv3 alert handshake failure");

  Pair q;
  setup_pair(&q, client_cfg(W->ca), server_cfg(W->leaf), "localhost");
  SSL_CTX_set_max_proto_version(q.sctx.native(), TLS1_2_VERSION);
  assert_true(q.server.init_server(q.sctx, &err));
  write_str(q.client, "twelve");
  pump(&q);
  assert_string_equal(q.client.protocol_version(), "TLSv1.2");
  assert_string_equal(q.server_got.c_str(), "twelve");
  q.client.shutdown();
  pump(&q);
  assert_int_equal(q.server.state(), TlsState::closed);
}

static void test_garbage_client_hello(void**) {
  TlsContext sctx;
  std::string err;
  assert_true(sctx.init_server(server_cfg(W->leaf), &err));
  {
    TlsEngine s;
    assert_true(s.init_server(sctx, &err));
    const char* http = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(s.feed_ciphertext(reinterpret_cast<const uint8_t*>(http), strlen(http)), TlsState::failed);
    assert_string_equal(s.error().c_str(), "http request");
    uint8_t buf[16];
    assert_int_equal(s.read_plaintext(buf, sizeof buf), 0);
  }
  {
    TlsEngine s;  // a handshake record that is not a ClientHello
    assert_true(s.init_server(sctx, &err));
    std::vector<uint8_t> junk = {0x16, 0x03, 0x01, 0x00, 0x08, 0x63, 0, 0, 4, 1, 2, 3, 4};
    assert_int_equal(s.feed_ciphertext(junk.data(), junk.size()), TlsState::failed);
    assert_string_equal(s.error().c_str(), "unexpected message");
    std::vector<uint8_t> alert;
    assert_true(s.take_ciphertext(&alert) > 0);  // the alert to send
    assert_int_equal(alert[0], 0x15);
  }
  {
    TlsEngine s;  // random bytes
    assert_true(s.init_server(sctx, &err));
    std::mt19937 rng(7);
    std::vector<uint8_t> junk(4096);
    for (auto& b : junk) b = static_cast<uint8_t>(rng());
    junk[0] = 0x42;
    assert_int_equal(s.feed_ciphertext(junk.data(), junk.size()), TlsState::failed);
    assert_false(s.error().empty());
  }
  {
    TlsEngine s;  // a ClientHello cut short: waiting, not failed
    assert_true(s.init_server(sctx, &err));
    TlsContext cctx;
    assert_true(cctx.init_client(client_cfg(W->ca), &err));
    TlsEngine c;
    assert_true(c.init_client(cctx, "localhost", &err));
    std::vector<uint8_t> hello;
    c.take_ciphertext(&hello);
    assert_true(hello.size() > 100);
    for (size_t i = 0; i + 1 < hello.size(); i++)
      assert_int_equal(s.feed_ciphertext(&hello[i], 1), TlsState::handshaking);
    s.feed_ciphertext(&hello.back(), 1);
    assert_int_equal(s.state(), TlsState::handshaking);  // now waiting for the client's Finished
    assert_true(s.pending_ciphertext() > 0);
  }
}

static void test_large_round_trip(void**) {
  Pair p;
  setup_pair(&p, client_cfg(W->ca), server_cfg(W->leaf), "localhost");
  pump(&p);
  std::string big(1 << 20, '\0');
  std::mt19937 rng(1);
  for (auto& c : big) c = static_cast<char>(rng());
  // Client: one 1 MiB write. Server: the same bytes in odd pieces.
  write_str(p.client, big);
  for (size_t off = 0; off < big.size();) {
    size_t n = std::min<size_t>(big.size() - off, 1 + rng() % 70000);
    write_str(p.server, big.substr(off, n));
    off += n;
  }
  pump(&p, 3000);
  assert_int_equal(p.server_got.size(), big.size());
  assert_true(p.server_got == big);
  assert_int_equal(p.client_got.size(), big.size());
  assert_true(p.client_got == big);
  // Fed in pieces that end inside records: the tails were kept, then freed.
  assert_int_equal(p.client.ciphertext_memory(), 0);
  assert_int_equal(p.server.ciphertext_memory(), 0);
}

// Counts application-data records (content type 23) and returns their sizes.
static std::vector<size_t> app_records(const std::vector<uint8_t>& wire) {
  std::vector<size_t> sizes;
  size_t off = 0;
  while (off + 5 <= wire.size()) {
    size_t len = (size_t(wire[off + 3]) << 8) | wire[off + 4];
    if (wire[off] == 23) sizes.push_back(len);
    off += 5 + len;
  }
  assert_int_equal(off, wire.size());
  return sizes;
}

static void test_small_writes_are_batched(void**) {
  Pair p;
  setup_pair(&p, client_cfg(W->ca), server_cfg(W->leaf), "localhost");
  pump(&p);
  std::vector<uint8_t> drop;
  p.client.take_ciphertext(&drop);
  std::string expect;
  for (int i = 0; i < 4000; i++) {  // 40,000 bytes as 4,000 writes of 10
    char chunk[11];
    snprintf(chunk, sizeof chunk, "%010d", i);
    write_str(p.client, chunk);
    expect += chunk;
  }
  std::vector<uint8_t> wire;
  p.client.take_ciphertext(&wire);
  std::vector<size_t> recs = app_records(wire);
  // TLS 1.3 adds 17 bytes per record (content type + AEAD tag).
  assert_int_equal(recs.size(), 3);
  assert_int_equal(recs[0], 16384 + 17);
  assert_int_equal(recs[1], 16384 + 17);
  assert_int_equal(recs[2], 40000 - 2 * 16384 + 17);
  p.server.feed_ciphertext(wire.data(), wire.size());
  read_all(p.server, &p.server_got);
  assert_true(p.server_got == expect);
  // flush() alone makes a record of what is held.
  write_str(p.client, "tail");
  assert_int_equal(p.client.pending_plaintext(), 4);
  p.client.flush();
  assert_int_equal(p.client.pending_plaintext(), 0);
  assert_true(p.client.pending_ciphertext() > 4);
}

static void test_close_notify(void**) {
  Pair p;
  setup_pair(&p, client_cfg(W->ca), server_cfg(W->leaf), "localhost");
  pump(&p);
  write_str(p.client, "last words");
  p.client.shutdown();  // held plaintext goes out before close_notify
  assert_true(p.client.shutdown_sent());
  uint8_t b = 'x';
  assert_int_equal(p.client.write_plaintext(&b, 1), 0);
  p.client.shutdown();  // idempotent
  pump(&p);
  assert_string_equal(p.server_got.c_str(), "last words");
  assert_int_equal(p.server.state(), TlsState::closed);
  assert_string_equal(p.server.error().c_str(), "");
  // The other direction stays open until its own close_notify (TLS 1.3 half-close).
  write_str(p.server, "reply");
  p.server.shutdown();
  pump(&p);
  assert_string_equal(p.client_got.c_str(), "reply");
  assert_int_equal(p.client.state(), TlsState::closed);
}

static void test_shutdown_during_handshake(void**) {
  Pair p;
  setup_pair(&p, client_cfg(W->ca), server_cfg(W->leaf), "localhost");
  write_str(p.client, "never sent");
  p.client.shutdown();
  assert_int_equal(p.client.pending_plaintext(), 0);
  std::vector<uint8_t> wire;
  p.client.take_ciphertext(&wire);  // only the ClientHello
  assert_int_equal(app_records(wire).size(), 0);
}

static void test_move(void**) {
  Pair p;
  setup_pair(&p, client_cfg(W->ca), server_cfg(W->leaf), "localhost");
  TlsEngine moved(std::move(p.client));
  assert_int_equal(p.client.state(), TlsState::idle);
  assert_int_equal(p.client.write_plaintext(reinterpret_cast<const uint8_t*>("a"), 1), 0);
  p.client = std::move(moved);
  TlsContext ctx2(std::move(p.sctx));
  assert_false(p.sctx.valid());
  pump(&p);  // the engines keep working: each holds its own context reference
  assert_int_equal(p.client.state(), TlsState::open);
  assert_int_equal(p.server.state(), TlsState::open);
  TlsEngine idle;
  uint8_t buf[4];
  assert_int_equal(idle.feed_ciphertext(buf, 0), TlsState::idle);
  assert_int_equal(idle.read_plaintext(buf, 4), 0);
  std::vector<uint8_t> out;
  assert_int_equal(idle.take_ciphertext(&out), 0);
  idle.shutdown();
}

static std::string write_temp(const std::string& dir, const char* name, const std::string& text) {
  std::string path = dir + "/" + name;
  FILE* f = fopen(path.c_str(), "w");
  assert_non_null(f);
  fwrite(text.data(), 1, text.size(), f);
  fclose(f);
  return path;
}

static void test_files(void**) {
  char tmpl[] = "/tmp/wscore-tls-XXXXXX";
  assert_non_null(mkdtemp(tmpl));
  std::string dir = tmpl;
  std::string ca = write_temp(dir, "ca.pem", W->ca.cert_pem());
  std::string chain = write_temp(dir, "chain.pem", W->leaf_by_inter.cert_pem() + W->inter.cert_pem());
  std::string key = write_temp(dir, "key.pem", W->leaf_by_inter.key_pem());
  std::string ckey = write_temp(dir, "ckey.pem", W->client.key_pem());
  std::string ccert = write_temp(dir, "ccert.pem", W->client.cert_pem());
  std::string junk = write_temp(dir, "junk.pem", "not a certificate\n");

  Pair p;
  TlsClientConfig cc;
  cc.ca_file = ca;
  cc.cert_file = ccert;
  cc.key_file = ckey;
  TlsServerConfig sc;
  sc.cert_file = chain;
  sc.key_file = key;
  sc.verify_client = true;
  sc.ca_file = ca;
  setup_pair(&p, cc, sc, "localhost");
  pump(&p);
  assert_int_equal(p.server.state(), TlsState::open);
  assert_true(p.server.peer_certificate_present());

  std::string err;
  TlsContext c;
  cc = TlsClientConfig{};
  cc.ca_file = dir + "/missing.pem";
  assert_false(c.init_client(cc, &err));
  assert_string_equal(err.c_str(), ("cannot load CA file " + dir + "/missing.pem: No such file or directory").c_str());
  cc.ca_file = junk;
  assert_false(c.init_client(cc, &err));
  assert_string_equal(err.c_str(), ("cannot load CA file " + junk + ": no certificate or crl found").c_str());
  assert_false(c.valid());

  sc = TlsServerConfig{};
  sc.cert_file = junk;
  sc.key_file = key;
  assert_false(c.init_server(sc, &err));
  assert_string_equal(err.c_str(), ("cannot load certificate file " + junk + ": no start line").c_str());
  sc.cert_file = chain;
  sc.key_file = ckey;  // somebody else's key
  assert_false(c.init_server(sc, &err));
  assert_string_equal(err.c_str(), "certificate and private key do not match: key values mismatch");
  sc.key_file = dir + "/nokey.pem";
  assert_false(c.init_server(sc, &err));
  assert_string_equal(err.c_str(), ("cannot load key file " + dir + "/nokey.pem: No such file or directory").c_str());

  for (const char* f : {"ca.pem", "chain.pem", "key.pem", "ckey.pem", "ccert.pem", "junk.pem"})
    unlink((dir + "/" + f).c_str());
  rmdir(dir.c_str());
}

static void test_config_errors(void**) {
  std::string err;
  TlsContext c;
  assert_false(c.init_server(TlsServerConfig{}, &err));
  assert_string_equal(err.c_str(), "a TLS server needs a certificate and a private key");
  TlsServerConfig sc = server_cfg(W->leaf);
  sc.verify_client = true;
  assert_false(c.init_server(sc, &err));
  assert_string_equal(err.c_str(), "verifying clients needs a CA file, directory or PEM");
  sc.ca_pem = "garbage";
  assert_false(c.init_server(sc, &err));
  assert_string_equal(err.c_str(), "CA PEM holds no certificate");

  TlsClientConfig cc;
  cc.cert_pem = W->client.cert_pem();
  assert_false(c.init_client(cc, &err));
  assert_string_equal(err.c_str(), "a certificate needs its private key");
  cc = TlsClientConfig{};
  cc.key_pem = W->client.key_pem();
  assert_false(c.init_client(cc, &err));
  assert_string_equal(err.c_str(), "a private key needs its certificate");
  cc.cert_pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
  assert_false(c.init_client(cc, &err));
  assert_true(err.rfind("cannot read certificate PEM: ", 0) == 0);

  // An encrypted key is refused, never a passphrase prompt on the terminal.
  BIO* b = BIO_new(BIO_s_mem());
  PEM_write_bio_PKCS8PrivateKey(b, W->leaf.key, EVP_aes_128_cbc(), nullptr, 0, nullptr, (void*)"secret");
  sc = server_cfg(W->leaf);
  sc.key_pem = Pki::drain(b);
  assert_false(c.init_server(sc, &err));
  assert_true(err.rfind("cannot read key PEM", 0) == 0);

  // System store: loads (whatever it holds) and then does not trust our CA.
  assert_true(c.init_client(TlsClientConfig{}, &err));
  TlsContext s;
  assert_true(s.init_server(server_cfg(W->leaf), &err));
  TlsEngine e;
  assert_false(e.init_client(s, "localhost", &err));
  assert_string_equal(err.c_str(), "a client engine needs a client context");
  assert_false(e.init_server(c, &err));
  assert_string_equal(err.c_str(), "a server engine needs a server context");
  assert_false(e.init_client(c, "", &err));
  assert_string_equal(err.c_str(), "TLS needs a host name");
  assert_false(e.init_client(TlsContext{}, "localhost", &err));
  assert_string_equal(err.c_str(), "TLS context is not initialised");
  assert_false(e.init_client(c, std::string_view("a\0b", 3), &err));
  assert_string_equal(err.c_str(), "host name contains a NUL byte");
  Pair p;
  p.client = TlsEngine();
  assert_true(p.client.init_client(c, "localhost", &err));
  assert_true(p.server.init_server(s, &err));
  pump(&p);
  assert_string_equal(p.client.error().c_str(), "certificate verify failed: unable to get local issuer certificate");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_handshake_and_echo),
      cmocka_unit_test(test_wildcard_and_trailing_dot),
      cmocka_unit_test(test_unknown_ca),
      cmocka_unit_test(test_self_signed_server),
      cmocka_unit_test(test_expired),
      cmocka_unit_test(test_hostname_mismatch),
      cmocka_unit_test(test_ip_addresses),
      cmocka_unit_test(test_insecure_skip_verify),
      cmocka_unit_test(test_intermediate_chain),
      cmocka_unit_test(test_mutual_tls),
      cmocka_unit_test(test_tls12),
      cmocka_unit_test(test_garbage_client_hello),
      cmocka_unit_test(test_large_round_trip),
      cmocka_unit_test(test_small_writes_are_batched),
      cmocka_unit_test(test_close_notify),
      cmocka_unit_test(test_shutdown_during_handshake),
      cmocka_unit_test(test_move),
      cmocka_unit_test(test_files),
      cmocka_unit_test(test_config_errors),
  };
  return cmocka_run_group_tests(tests, setup_world, teardown_world);
}
